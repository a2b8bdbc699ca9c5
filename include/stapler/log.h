/* Log lines to stderr (Docker collects them), as text or JSON.
 *
 * While the proxy runs, each thread queues its lines in a ring of its own that a writer thread
 * drains, so a slow or blocked stderr never stalls a worker and a line takes no lock shared
 * with other threads: when a thread's ring is full its line is dropped and counted instead.
 * Lines of one thread keep their order; lines of different threads may reach stderr out of
 * their timestamps' order by up to a tenth of a second. Before log_async_start() and after
 * log_async_stop(), lines are written directly (start-up messages, command-line tools).
 *
 * Every line is one line whatever it holds: control bytes and bytes that are not UTF-8 are
 * written as the text \xNN, and JSON lines are always valid JSON in UTF-8. Bytes a client chose
 * (SNI, method, path, ALPN, ...) go through log_escape(), in both formats. */
#ifndef STAPLER_LOG_H
#define STAPLER_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

void log_configure(enum log_level level, enum log_format format);
bool log_enabled(enum log_level level);

/* Writes one line at `level` when that level is enabled. A value a client chose goes in as
 * "%s" of its log_escape()d text, in double quotes. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
  do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

/* The one escape for bytes a client chose: writes `len` bytes of `s` to `out` (capacity `cap`,
 * NUL-terminated) keeping printable ASCII, with a backslash before '"' and '\', and every other
 * byte (control bytes, NUL, DEL, non-ASCII) as the text \xNN. The result cannot end a line nor,
 * inside double quotes, a value. A result that does not fit ends before the escape that would
 * not fit. Returns its length. */
size_t log_escape(char *out, size_t cap, const char *s, size_t len);
/* A capacity that holds the escape of any `n` bytes. */
#define LOG_ESCAPED_SIZE(n) (4 * (n) + 1)

/* A key and a string or number, for lines that machines read (access logs). String values are
 * log_escape()d: in text they are quoted unless they are one plain word, in JSON they are the
 * same escaped text as a JSON string. */
struct log_field {
  const char *key;
  const char *str; /* NULL: use num */
  long long num;
};
static inline struct log_field log_str_field(const char *key, const char *value) {
  return (struct log_field){key, value ? value : "-", 0};
}
#define LOG_STR(k, v) log_str_field((k), (v))
#define LOG_NUM(k, v) ((struct log_field){(k), NULL, (long long)(v)})

/* "msg key=value ..." in text, {"msg":..,"key":value,..} in JSON. */
void log_fields(enum log_level level, const char *msg, const struct log_field *fields,
                size_t count);

struct strlist;
/* One line per item of `list`, each after `prefix` (may be ""). */
void log_strlist(enum log_level level, const char *prefix, const struct strlist *list);

void log_async_start(void);
/* Call once the other threads that log have stopped. Writes out what is queued and stops the writer thread. A writer still stuck in a write after
 * `timeout_ms` (stderr is a pipe nobody reads) is given up on: the lines it has not written are
 * dropped and counted, and so is every later line. */
void log_async_stop(uint64_t timeout_ms);
/* Lines dropped because the ring was full or stderr was stuck. */
uint64_t log_dropped(void);

/* For tests: every line goes to `sink` instead of stderr (NULL: stderr again). */
typedef void log_sink_fn(const char *line, size_t len);
void log_set_sink(log_sink_fn *sink);

#endif
