/* Log lines to stderr, as text or JSON, one write(2) per line. */
#ifndef STAPLER_LOG_H
#define STAPLER_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

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

/* Appends `s` to `out` (capacity `cap`, current length `*len`) as the inside of a JSON string. */
void log_json_escape(char *out, size_t cap, size_t *len, const char *s);

#endif
