/* Log lines go to stderr (Docker collects them). Each line is formatted into a stack buffer and
 * written with a single write(2), so lines from different threads never interleave. */
#include "stapler/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int current_level = LOG_INFO;
static _Atomic int current_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_configure(enum log_level level, enum log_format format) {
  atomic_store(&current_level, level);
  atomic_store(&current_format, format);
}

bool log_enabled(enum log_level level) { return (int)level <= atomic_load(&current_level); }

static size_t format_timestamp(char *out, size_t cap) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
  int m = snprintf(out + n, cap - n, ".%03dZ", (int)(tv.tv_usec / 1000));
  return n + (m > 0 ? (size_t)m : 0);
}

void log_json_escape(char *out, size_t cap, size_t *len, const char *s) {
  size_t n = *len;
  for (; *s && n + 7 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      out[n++] = '\\';
      out[n++] = (char)ch;
    } else if (ch < 0x20) {
      n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
    } else {
      out[n++] = (char)ch;
    }
  }
  out[n] = '\0';
  *len = n;
}

static void write_line(const char *line, size_t len) {
  while (len > 0) {
    ssize_t w = write(STDERR_FILENO, line, len);
    if (w <= 0) return; /* nothing sensible to do when stderr is gone */
    line += w;
    len -= (size_t)w;
  }
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap) {
  if (!log_enabled(level)) return;
  char msg[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);

  char line[4096];
  char ts[40];
  format_timestamp(ts, sizeof ts);
  size_t n;
  if (atomic_load(&current_format) == LOG_FORMAT_JSON) {
    n = (size_t)snprintf(line, sizeof line, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                         level_names[level]);
    log_json_escape(line, sizeof line - 4, &n, msg);
    memcpy(line + n, "\"}\n", 3);
    n += 3;
  } else {
    int m = snprintf(line, sizeof line, "%s %-5s %s\n", ts, level_names[level], msg);
    n = m < 0 ? 0 : (size_t)m;
    if (n >= sizeof line) {
      n = sizeof line - 1;
      line[n - 1] = '\n';
    }
  }
  write_line(line, n);
}

void log_msg(enum log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_vmsg(level, fmt, ap);
  va_end(ap);
}
