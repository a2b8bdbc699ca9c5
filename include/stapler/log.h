/* Log lines to stderr (Docker collects them), as text or JSON.
 *
 * While the proxy runs, lines go through an in-memory ring that a writer thread drains, so a
 * slow or blocked stderr never stalls a worker: when the ring is full a line is dropped and
 * counted instead. Before log_async_start() and after log_async_stop(), lines are written
 * directly (start-up messages, command-line tools). */
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

/* Writes one line at `level` when that level is enabled. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
  do { if (log_enabled(LOG_DEBUG)) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

/* A key and a string or number, for lines that machines read (access logs). */
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
/* Writes out what is queued and stops the writer thread. */
void log_async_stop(void);
/* Lines dropped because the ring was full. */
uint64_t log_dropped(void);

/* Appends `s` to `out` (capacity `cap`, current length `*len`) as the inside of a JSON string. */
void log_json_escape(char *out, size_t cap, size_t *len, const char *s);

#endif
