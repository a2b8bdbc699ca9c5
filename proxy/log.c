#include "stapler/log.h"

#include "stapler/strlist.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RING_SIZE (4 * 1024 * 1024)
#define LINE_MAX_BYTES 4096
/* The writer wakes when this much is queued, or after FLUSH_MS: a line costs no system call of
 * its own, and reaches stderr within a tenth of a second. */
#define WAKE_BYTES (64 * 1024)
#define FLUSH_MS 100

static _Atomic int current_level = LOG_INFO;
static _Atomic int current_format = LOG_FORMAT_TEXT;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* The ring: bytes [head, head + used) modulo RING_SIZE wait to be written. */
static struct {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  pthread_t writer;
  bool running, stopping;
  char data[RING_SIZE];
  size_t head, used;
} ring = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};
static _Atomic uint64_t dropped;

void log_configure(enum log_level level, enum log_format format) {
  atomic_store(&current_level, level);
  atomic_store(&current_format, format);
}

bool log_enabled(enum log_level level) { return (int)level <= atomic_load(&current_level); }

uint64_t log_dropped(void) { return atomic_load(&dropped); }

static void write_all(const char *p, size_t len) {
  while (len > 0) {
    ssize_t w = write(STDERR_FILENO, p, len);
    if (w <= 0) return; /* nothing sensible to do when stderr is gone */
    p += w;
    len -= (size_t)w;
  }
}

static void wait_for_lines(void) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_nsec += FLUSH_MS * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  pthread_cond_timedwait(&ring.wake, &ring.lock, &until);
}

static void *writer_main(void *arg) {
  static char chunk[64 * 1024];
  pthread_mutex_lock(&ring.lock);
  for (;;) {
    while (ring.used == 0 && !ring.stopping) wait_for_lines();
    if (ring.used == 0) break; /* stopping, and everything written */
    size_t n = ring.used < sizeof chunk ? ring.used : sizeof chunk;
    size_t first = RING_SIZE - ring.head < n ? RING_SIZE - ring.head : n;
    memcpy(chunk, ring.data + ring.head, first);
    memcpy(chunk + first, ring.data, n - first);
    ring.head = (ring.head + n) % RING_SIZE;
    ring.used -= n;
    pthread_mutex_unlock(&ring.lock);
    write_all(chunk, n);
    pthread_mutex_lock(&ring.lock);
  }
  pthread_mutex_unlock(&ring.lock);
  return NULL;
}

void log_async_start(void) {
  pthread_mutex_lock(&ring.lock);
  if (!ring.running) {
    ring.stopping = false;
    ring.running = pthread_create(&ring.writer, NULL, writer_main, NULL) == 0;
  }
  pthread_mutex_unlock(&ring.lock);
}

void log_async_stop(void) {
  pthread_mutex_lock(&ring.lock);
  bool was_running = ring.running;
  ring.stopping = true;
  pthread_cond_signal(&ring.wake);
  pthread_mutex_unlock(&ring.lock);
  if (!was_running) return;
  pthread_join(ring.writer, NULL);
  pthread_mutex_lock(&ring.lock);
  ring.running = false;
  pthread_mutex_unlock(&ring.lock);
  uint64_t lost = log_dropped();
  if (lost) log_msg(LOG_WARN, "%llu log line(s) were dropped: stderr could not keep up",
                    (unsigned long long)lost);
}

/* Queues a line, or writes it at once when no writer thread runs. Warnings and errors wake the
 * writer at once; other lines wait for the batch. */
static void emit(const char *line, size_t len, enum log_level level) {
  pthread_mutex_lock(&ring.lock);
  if (!ring.running || ring.stopping) {
    pthread_mutex_unlock(&ring.lock);
    write_all(line, len);
    return;
  }
  if (RING_SIZE - ring.used < len) {
    pthread_mutex_unlock(&ring.lock);
    atomic_fetch_add(&dropped, 1);
    return;
  }
  size_t tail = (ring.head + ring.used) % RING_SIZE;
  size_t first = RING_SIZE - tail < len ? RING_SIZE - tail : len;
  memcpy(ring.data + tail, line, first);
  memcpy(ring.data, line + first, len - first);
  bool crossed = ring.used < WAKE_BYTES && ring.used + len >= WAKE_BYTES;
  ring.used += len;
  if (crossed || level <= LOG_WARN) pthread_cond_signal(&ring.wake);
  pthread_mutex_unlock(&ring.lock);
}

/* 2026-11-22T04:48:47.983Z. The part up to the seconds changes once a second: it is kept per
 * thread. Returns the length (24); `out` has room for 32 bytes. */
static size_t format_timestamp(char *out) {
  static _Thread_local time_t cached_sec = -1;
  static _Thread_local char cached[20];
  struct timeval tv;
  gettimeofday(&tv, NULL);
  if (tv.tv_sec != cached_sec) {
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_sec = tv.tv_sec;
  }
  memcpy(out, cached, 19);
  int ms = (int)(tv.tv_usec / 1000);
  out[19] = '.';
  out[20] = (char)('0' + ms / 100);
  out[21] = (char)('0' + ms / 10 % 10);
  out[22] = (char)('0' + ms % 10);
  out[23] = 'Z';
  out[24] = '\0';
  return 24;
}

static void append(char *out, size_t cap, size_t *len, const char *s, size_t n) {
  if (*len + n >= cap) n = *len < cap ? cap - *len - 1 : 0;
  memcpy(out + *len, s, n);
  *len += n;
  out[*len] = '\0';
}

static void append_str(char *out, size_t cap, size_t *len, const char *s) {
  append(out, cap, len, s, strlen(s));
}

static void append_num(char *out, size_t cap, size_t *len, long long v) {
  char digits[24];
  size_t n = sizeof digits;
  unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  do {
    digits[--n] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) digits[--n] = '-';
  append(out, cap, len, digits + n, sizeof digits - n);
}

void log_json_escape(char *out, size_t cap, size_t *len, const char *s) {
  size_t n = *len;
  for (; *s && n + 7 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      out[n++] = '\\';
      out[n++] = (char)ch;
    } else if (ch < 0x20 || ch == 0x7f) {
      n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
    } else {
      out[n++] = (char)ch;
    }
  }
  out[n] = '\0';
  *len = n;
}

/* A text value: bare when it is one plain word, else quoted with escapes (so a client cannot
 * forge extra fields or lines). */
static void text_value(char *out, size_t cap, size_t *len, const char *s) {
  bool plain = *s != '\0';
  for (const char *p = s; *p && plain; p++)
    plain = (unsigned char)*p > ' ' && *p != '"' && *p != '\\' && *p != '=' && *p != 0x7f;
  if (plain) {
    append_str(out, cap, len, s);
  } else if (*len + 2 < cap) {
    out[(*len)++] = '"';
    log_json_escape(out, cap - 1, len, s);
    out[(*len)++] = '"';
  }
  if (*len >= cap) *len = cap - 1;
}

static size_t start_line(char *line, size_t cap, enum log_level level, bool json) {
  static const char *const padded[] = {"error ", "warn  ", "info  ", "debug "};
  char ts[32];
  size_t n = 0;
  format_timestamp(ts);
  if (json) {
    append_str(line, cap, &n, "{\"time\":\"");
    append_str(line, cap, &n, ts);
    append_str(line, cap, &n, "\",\"level\":\"");
    append_str(line, cap, &n, level_names[level]);
    append_str(line, cap, &n, "\",\"msg\":\"");
  } else {
    append_str(line, cap, &n, ts);
    append_str(line, cap, &n, " ");
    append_str(line, cap, &n, padded[level]);
  }
  return n;
}

static void finish_line(char *line, size_t cap, size_t n, bool json, enum log_level level) {
  if (n > cap - 4) n = cap - 4;
  if (json) line[n++] = '}';
  line[n++] = '\n';
  emit(line, n, level);
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap) {
  if (!log_enabled(level)) return;
  char msg[2048], line[LINE_MAX_BYTES];
  vsnprintf(msg, sizeof msg, fmt, ap);
  bool json = atomic_load(&current_format) == LOG_FORMAT_JSON;
  size_t n = start_line(line, sizeof line, level, json);
  if (json) {
    log_json_escape(line, sizeof line - 4, &n, msg);
    line[n++] = '"';
  } else {
    n += (size_t)snprintf(line + n, sizeof line - n, "%s", msg);
  }
  finish_line(line, sizeof line, n, json, level);
}

void log_msg(enum log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_vmsg(level, fmt, ap);
  va_end(ap);
}

void log_fields(enum log_level level, const char *msg, const struct log_field *fields,
                size_t count) {
  if (!log_enabled(level)) return;
  char line[LINE_MAX_BYTES];
  const size_t cap = sizeof line - 8;
  bool json = atomic_load(&current_format) == LOG_FORMAT_JSON;
  size_t n = start_line(line, cap, level, json);
  if (json) {
    log_json_escape(line, cap, &n, msg);
    line[n++] = '"';
  } else {
    append_str(line, cap, &n, msg);
  }
  for (size_t i = 0; i < count && n < cap - 32; i++) {
    const struct log_field *f = &fields[i];
    append_str(line, cap, &n, json ? ",\"" : " ");
    append_str(line, cap, &n, f->key);
    append_str(line, cap, &n, json ? "\":" : "=");
    if (!f->str) {
      append_num(line, cap, &n, f->num);
    } else if (json) {
      line[n++] = '"';
      log_json_escape(line, cap - 2, &n, f->str);
      line[n++] = '"';
    } else {
      text_value(line, cap, &n, f->str);
    }
    if (n >= cap) n = cap - 1;
  }
  finish_line(line, sizeof line, n, json, level);
}

void log_strlist(enum log_level level, const char *prefix, const struct strlist *list) {
  for (size_t i = 0; i < list->count; i++) log_msg(level, "%s%s", prefix, list->items[i]);
}
