/* Small helpers used everywhere: allocation that cannot fail silently, file reading, clocks. */
#ifndef STAPLER_UTIL_H
#define STAPLER_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#include <sys/param.h> /* MIN and MAX */
#define CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Out of memory is not recoverable for a proxy in the middle of a handshake: exit loudly. */
_Noreturn void die_oom(void);
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Reads a whole regular file of at most `max_len` bytes. Anything else (a directory, a FIFO, a
 * device) is refused without waiting for it. Returns NULL, or why the file cannot be read. The
 * caller frees *out. */
const char *read_file(const char *path, uint8_t **out, size_t *out_len, size_t max_len);

/* Wall-clock seconds. The environment variable STAPLER_TEST_CLOCK_OFFSET (seconds, read once)
 * shifts it, so tests can see staples age and expire without waiting; never set it in
 * production. */
time_t wall_now(void);
/* The same clock in milliseconds, for timers that fire at a wall-clock moment. */
uint64_t wall_now_ms(void);

/* The process's open-file limit (soft RLIMIT_NOFILE). */
uint64_t util_fd_limit(void);
/* Raises the soft open-file limit to the hard one; returns the new soft limit. */
uint64_t util_raise_fd_limit(void);

/* Lowercases ASCII in place. */
void ascii_lower(char *s);

#endif
