#include "stapler/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

_Noreturn void die_oom(void) {
  static const char msg[] = "stapler: out of memory\n";
  ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
  abort();
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die_oom();
  return p;
}

void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) die_oom();
  return p;
}

void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) die_oom();
  return p;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *xstrndup(const char *s, size_t n) {
  char *p = xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

static const char *not_a_file(mode_t mode) {
  if (S_ISDIR(mode)) return "it is a directory";
  if (S_ISFIFO(mode)) return "it is a FIFO, not a regular file";
  if (S_ISSOCK(mode)) return "it is a socket, not a regular file";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "it is a device, not a regular file";
  return S_ISREG(mode) ? NULL : "it is not a regular file";
}

const char *read_file(const char *path, uint8_t **out, size_t *out_len, size_t max_len) {
  /* O_NONBLOCK: opening a FIFO would otherwise wait for a writer, for ever. */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return strerror(errno);
  struct stat st;
  const char *why = fstat(fd, &st) != 0 ? strerror(errno) : not_a_file(st.st_mode);
  if (why) {
    close(fd);
    return why;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = xmalloc(cap);
  for (;;) {
    if (len == cap) {
      if (cap >= max_len) {
        why = strerror(EFBIG);
        break;
      }
      cap = MIN(cap * 2, max_len);
      buf = xrealloc(buf, cap);
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) why = strerror(errno);
    if (n <= 0) break;
    len += (size_t)n;
  }
  close(fd);
  if (why) {
    free(buf);
    return why;
  }
  *out = buf;
  *out_len = len;
  return NULL;
}

static long clock_offset(void) {
  static _Atomic long offset = LONG_MIN;
  long v = atomic_load_explicit(&offset, memory_order_relaxed);
  if (v == LONG_MIN) {
    const char *s = getenv("STAPLER_TEST_CLOCK_OFFSET");
    v = s ? strtol(s, NULL, 10) : 0;
    atomic_store_explicit(&offset, v, memory_order_relaxed);
  }
  return v;
}

time_t wall_now(void) { return time(NULL) + clock_offset(); }

uint64_t wall_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)(ts.tv_sec + clock_offset()) * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void ascii_lower(char *s) {
  for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

uint64_t util_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

uint64_t util_raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  return util_fd_limit();
}
