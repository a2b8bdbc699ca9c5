#include "stapler/log.h"

#include "stapler/strlist.h"
#include "stapler/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Each thread that logs gets its own ring of this size, allocated at its first line. */
#define RING_SIZE (512 * 1024)
#define LINE_MAX_BYTES 4096
/* What every line keeps free for its end: "}" in JSON and "\n". */
#define LINE_END_ROOM 2
/* A line wakes a sleeping writer, which then waits FLUSH_MS for more (less when a ring holds
 * WAKE_BYTES): on a busy process a line costs no system call and no lock of its own, and every
 * line reaches stderr within a tenth of a second. */
#define WAKE_BYTES (64 * 1024)
#define FLUSH_MS 100

static _Atomic int current_level = LOG_INFO;
static _Atomic int current_format = LOG_FORMAT_TEXT;
static const char *const level_names[] = {"error", "warn", "info", "debug"};
static log_sink_fn *sink; /* tests only: see log_set_sink() */

/* One thread's lines waiting for the writer: a single-producer single-consumer ring, so a line
 * takes no lock. Bytes [head, tail) (free-running counters, taken modulo RING_SIZE) are queued;
 * only the owning thread moves `tail`, only the writer moves `head`. Rings are never freed while
 * the process runs: a thread that exits gives its ring back (`owned`) for the next one. */
struct log_ring {
  _Atomic size_t head, tail;
  atomic_bool owned;
  struct log_ring *_Atomic next; /* the list the writer walks; rings are only ever prepended */
  char data[RING_SIZE];
};

static struct log_ring *_Atomic rings;
static _Thread_local struct log_ring *my_ring;
static pthread_key_t ring_key; /* its destructor gives the ring back when the thread exits */
static pthread_once_t ring_key_once = PTHREAD_ONCE_INIT;

/* The writer thread and its state. The mutex guards only these fields and the wake-up: a
 * producer takes it when it wants the writer awake, not for each line. */
static struct {
  pthread_mutex_t lock;
  pthread_cond_t wake;     /* the writer waits on it for lines */
  pthread_cond_t finished; /* log_async_stop waits on it for the writer */
  pthread_t writer;
  bool stopping, writer_done;
} writer = {.lock = PTHREAD_MUTEX_INITIALIZER,
            .wake = PTHREAD_COND_INITIALIZER,
            .finished = PTHREAD_COND_INITIALIZER};
/* Lines go to rings while this is set (log_async_start .. log_async_stop), else straight out. */
static atomic_bool async_running;
/* The writer was given up on: a direct write would block as well, so lines are dropped. */
static atomic_bool stderr_stuck;
static _Atomic uint64_t dropped;

void log_configure(enum log_level level, enum log_format format) {
  atomic_store(&current_level, level);
  atomic_store(&current_format, format);
}

bool log_enabled(enum log_level level) { return (int)level <= atomic_load(&current_level); }

uint64_t log_dropped(void) { return atomic_load(&dropped); }

void log_set_sink(log_sink_fn *fn) { sink = fn; }

static void write_all(const char *p, size_t len) {
  while (len > 0) {
    ssize_t w = write(STDERR_FILENO, p, len);
    if (w <= 0) return; /* nothing sensible to do when stderr is gone */
    p += w;
    len -= (size_t)w;
  }
}

static struct timespec realtime_in(uint64_t ms) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  t.tv_sec += (time_t)(ms / 1000);
  t.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (t.tv_nsec >= 1000000000L) {
    t.tv_sec++;
    t.tv_nsec -= 1000000000L;
  }
  return t;
}

/* ---- the rings -------------------------------------------------------------------------------*/

static void give_back_ring(void *ring) {
  atomic_store_explicit(&((struct log_ring *)ring)->owned, false, memory_order_release);
}

static void make_ring_key(void) { pthread_key_create(&ring_key, give_back_ring); }

/* The calling thread's ring: one given back by a thread that exited, or a new one. */
static struct log_ring *thread_ring(void) {
  if (my_ring) return my_ring;
  pthread_once(&ring_key_once, make_ring_key);
  struct log_ring *r;
  for (r = atomic_load(&rings); r; r = atomic_load(&r->next)) {
    bool free_ring = false;
    if (atomic_compare_exchange_strong(&r->owned, &free_ring, true)) break;
  }
  if (!r) {
    r = xmalloc(sizeof *r);
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->owned, true);
    struct log_ring *first = atomic_load(&rings);
    do atomic_store_explicit(&r->next, first, memory_order_relaxed);
    while (!atomic_compare_exchange_weak(&rings, &first, r));
  }
  pthread_setspecific(ring_key, r);
  return my_ring = r;
}

static size_t ring_used(struct log_ring *r) {
  return atomic_load_explicit(&r->tail, memory_order_acquire) -
         atomic_load_explicit(&r->head, memory_order_acquire);
}

/* Producer side. Returns false when the ring has no room for the line. */
static bool ring_put(struct log_ring *r, const char *line, size_t len, bool *crossed) {
  size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
  size_t used = tail - atomic_load_explicit(&r->head, memory_order_acquire);
  if (RING_SIZE - used < len) return false;
  size_t at = tail % RING_SIZE;
  size_t first = MIN(RING_SIZE - at, len);
  memcpy(r->data + at, line, first);
  memcpy(r->data, line + first, len - first);
  atomic_store_explicit(&r->tail, tail + len, memory_order_release);
  *crossed = used < WAKE_BYTES && used + len >= WAKE_BYTES;
  return true;
}

/* Consumer side: writes what `r` holds. */
static void ring_drain(struct log_ring *r) {
  size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
  while (head != tail) {
    size_t at = head % RING_SIZE;
    size_t n = MIN(tail - head, RING_SIZE - at);
    ssize_t w = write(STDERR_FILENO, r->data + at, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) w = (ssize_t)n; /* stderr is gone: nothing sensible to do with these bytes */
    head += (size_t)w;
    atomic_store_explicit(&r->head, head, memory_order_release);
  }
}

static bool rings_empty(void) {
  for (struct log_ring *r = atomic_load(&rings); r; r = atomic_load(&r->next))
    if (ring_used(r)) return false;
  return true;
}

/* ---- the writer thread -----------------------------------------------------------------------*/

/* Set while the writer sleeps with every ring empty: the next line wakes it (see emit). An
 * idle process then has no thread waking up to look for lines. */
static atomic_bool writer_asleep;

static void *writer_main(void *arg) {
  pthread_mutex_lock(&writer.lock);
  for (;;) {
    pthread_mutex_unlock(&writer.lock);
    for (struct log_ring *r = atomic_load(&rings); r; r = atomic_load(&r->next)) ring_drain(r);
    pthread_mutex_lock(&writer.lock);
    if (!rings_empty()) continue;
    if (writer.stopping) break;
    /* Announce the sleep, then look again: a producer either sees the flag and wakes us (it
     * takes the lock we hold until the wait) or queued its line before the second look.
     * The fences order each side's store before its load (see emit). */
    atomic_store(&writer_asleep, true);
    atomic_thread_fence(memory_order_seq_cst);
    while (!writer.stopping && rings_empty()) pthread_cond_wait(&writer.wake, &writer.lock);
    atomic_store(&writer_asleep, false);
    if (writer.stopping) continue;
    /* Woken by a line: let more join it for up to FLUSH_MS (a warning, an error or a full
     * batch wakes us sooner), so a busy process writes in batches. */
    struct timespec until = realtime_in(FLUSH_MS);
    pthread_cond_timedwait(&writer.wake, &writer.lock, &until);
  }
  writer.writer_done = true;
  pthread_cond_signal(&writer.finished);
  pthread_mutex_unlock(&writer.lock);
  (void)arg;
  return NULL;
}

static void wake_writer(void) {
  pthread_mutex_lock(&writer.lock);
  pthread_cond_signal(&writer.wake);
  pthread_mutex_unlock(&writer.lock);
}

void log_async_start(void) {
  if (atomic_load(&async_running) || atomic_load(&stderr_stuck)) return;
  writer.stopping = writer.writer_done = false;
  if (pthread_create(&writer.writer, NULL, writer_main, NULL) == 0)
    atomic_store(&async_running, true);
}

/* Lines still queued in the rings (a partly written one counts). Only reads: the writer may
 * still be moving `head`, the lines themselves no longer change. */
static uint64_t queued_lines(void) {
  uint64_t lines = 0;
  for (struct log_ring *r = atomic_load(&rings); r; r = atomic_load(&r->next)) {
    size_t head = atomic_load(&r->head), tail = atomic_load(&r->tail);
    for (size_t i = head; i != tail; i++) lines += r->data[i % RING_SIZE] == '\n';
  }
  return lines;
}

void log_async_stop(uint64_t timeout_ms) {
  if (!atomic_load(&async_running)) return;
  pthread_mutex_lock(&writer.lock);
  writer.stopping = true;
  pthread_cond_signal(&writer.wake);
  struct timespec until = realtime_in(timeout_ms);
  while (!writer.writer_done)
    if (pthread_cond_timedwait(&writer.finished, &writer.lock, &until) == ETIMEDOUT) break;
  bool late = !writer.writer_done;
  pthread_mutex_unlock(&writer.lock);
  if (late) {
    /* The writer is stuck in a write that does not return (a pipe nobody reads). It is left
     * there, detached, and ends with the process: cancelling it would unwind it out of libc's
     * write, which AddressSanitizer reports as a stack error, to the stuck stderr. What it
     * still holds is dropped, and so is every later line: a direct write would block too. */
    atomic_store(&stderr_stuck, true);
    atomic_store(&async_running, false);
    pthread_detach(writer.writer);
    atomic_fetch_add(&dropped, queued_lines());
  } else {
    pthread_join(writer.writer, NULL);
    /* Lines logged from here on are written directly. The threads that log have stopped by
     * now (see log.h); one whose line came after the writer's last look has it written here. */
    atomic_store(&async_running, false);
    for (struct log_ring *r = atomic_load(&rings); r; r = atomic_load(&r->next)) ring_drain(r);
  }
  uint64_t lost = log_dropped();
  if (lost) log_msg(LOG_WARN, "%llu log line(s) were dropped: stderr could not keep up",
                    (unsigned long long)lost);
}

/* Queues a line in the calling thread's ring, or writes it at once when no writer thread runs.
 * Warnings and errors wake the writer at once; other lines wait for the batch. */
static void emit(const char *line, size_t len, enum log_level level) {
  if (sink) {
    sink(line, len);
    return;
  }
  if (!atomic_load_explicit(&async_running, memory_order_acquire)) {
    if (atomic_load(&stderr_stuck))
      atomic_fetch_add(&dropped, 1);
    else
      write_all(line, len);
    return;
  }
  bool crossed = false;
  if (!ring_put(thread_ring(), line, len, &crossed)) {
    atomic_fetch_add(&dropped, 1);
    return;
  }
  atomic_thread_fence(memory_order_seq_cst); /* the line is queued before the flag is read */
  if (crossed || level <= LOG_WARN || atomic_load_explicit(&writer_asleep, memory_order_relaxed))
    wake_writer();
}

/* ---- escaping --------------------------------------------------------------------------------*/

enum escape_style {
  ESCAPE_VALUE, /* bytes a client chose: printable ASCII, '"' and '\' after a backslash */
  ESCAPE_TEXT,  /* a text line: UTF-8 but no control characters, quotes as they are */
  ESCAPE_JSON,  /* the inside of a JSON string: ESCAPE_TEXT, '"' and '\' after a backslash */
};

/* The length of the character at `s` (at most `n` bytes) when it is printable: printable ASCII,
 * or well-formed UTF-8 (RFC 3629) that is not a C1 control. 0 otherwise. */
static size_t printable_char(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c >= 0x20 && c < 0x7f) return 1;
  size_t len;
  unsigned cp, min;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2, cp = c & 0x1f, min = 0xa0; /* 0x80..0x9f are the C1 controls */
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3, cp = c & 0x0f, min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

/* Appends `n` bytes of `s` to out[*len..cap) in `style`, one whole character or escape at a
 * time: a value cut short never ends inside an escape or a UTF-8 sequence. No NUL is added.
 * Returns whether all of `s` fitted. */
static bool escape(char *out, size_t cap, size_t *len, const char *s, size_t n,
                   enum escape_style style) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  size_t at = *len;
  while (p < end) {
    /* Printable ASCII that needs no backslash, the common case, goes in as a run. */
    const unsigned char *run = p;
    while (p < end && *p >= 0x20 && *p < 0x7f &&
           (style == ESCAPE_TEXT || (*p != '"' && *p != '\\')))
      p++;
    size_t run_len = MIN((size_t)(p - run), at < cap ? cap - at : 0);
    memcpy(out + at, run, run_len);
    at += run_len;
    if (run + run_len < p) {
      p = run + run_len;
      break;
    }
    if (p == end) break;
    char unit[8];
    size_t unit_len = 0;
    size_t take = style == ESCAPE_VALUE ? (*p >= 0x20 && *p < 0x7f)
                                        : printable_char(p, (size_t)(end - p));
    if (take && style != ESCAPE_TEXT && (*p == '"' || *p == '\\')) {
      unit[unit_len++] = '\\';
      unit[unit_len++] = (char)*p;
    } else if (take) {
      memcpy(unit, p, take);
      unit_len = take;
    } else {
      take = 1;
      unit[unit_len++] = '\\';
      if (style == ESCAPE_JSON) unit[unit_len++] = '\\'; /* a JSON reader sees \xNN too */
      unit[unit_len++] = 'x';
      unit[unit_len++] = hex[*p >> 4];
      unit[unit_len++] = hex[*p & 15];
    }
    if (at > cap || unit_len > cap - at) break;
    memcpy(out + at, unit, unit_len);
    at += unit_len;
    p += take;
  }
  *len = at;
  return p == end;
}

size_t log_escape(char *out, size_t cap, const char *s, size_t len) {
  if (cap == 0) return 0;
  size_t n = 0;
  escape(out, cap - 1, &n, s, len, ESCAPE_VALUE);
  out[n] = '\0';
  return n;
}

/* ---- lines ---------------------------------------------------------------------------------*/

/* A line being built. Appends stop LINE_END_ROOM bytes before the end of `text`, so that a line
 * cut short still gets its end. */
struct line {
  char text[LINE_MAX_BYTES];
  size_t len;
  bool json;
};

#define LINE_BODY (LINE_MAX_BYTES - LINE_END_ROOM)

/* Appends bytes of stapler's own (keys, numbers) when they fit whole. */
static bool put(struct line *l, const char *s, size_t n) {
  if (n > LINE_BODY - l->len) return false;
  memcpy(l->text + l->len, s, n);
  l->len += n;
  return true;
}

static bool put_str(struct line *l, const char *s) { return put(l, s, strlen(s)); }

static bool put_num(struct line *l, long long v) {
  char digits[24];
  size_t n = sizeof digits;
  unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  do {
    digits[--n] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) digits[--n] = '-';
  return put(l, digits + n, sizeof digits - n);
}

/* Text of any origin: in JSON a string, in text as it is; either way one line of UTF-8. False
 * when it did not fit whole (a JSON string is closed all the same). */
static bool put_text(struct line *l, const char *s) {
  size_t n = strlen(s);
  if (!l->json) return escape(l->text, LINE_BODY, &l->len, s, n, ESCAPE_TEXT);
  if (l->len + 2 > LINE_BODY) return false;
  l->text[l->len++] = '"';
  bool whole = escape(l->text, LINE_BODY - 1, &l->len, s, n, ESCAPE_JSON);
  l->text[l->len++] = '"';
  return whole;
}

/* Whether a text value can stand without quotes: one word that log_escape() leaves as it is,
 * without '='. */
static bool plain_word(const char *s) {
  if (!*s) return false;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f || *s == '"' || *s == '\\' ||
        *s == '=')
      return false;
  return true;
}

/* A string field value, as log_escape() writes it. False when the line is full. */
static bool put_value(struct line *l, const char *s) {
  size_t n = strlen(s);
  if (l->json) {
    char escaped[LINE_MAX_BYTES];
    log_escape(escaped, sizeof escaped, s, n);
    return put_text(l, escaped);
  }
  bool quoted = !plain_word(s);
  if (l->len + 2 * quoted >= LINE_BODY) return false;
  if (quoted) l->text[l->len++] = '"';
  /* log_escape() cuts between escapes; its NUL lands where the closing quote goes. */
  l->len += log_escape(l->text + l->len, LINE_BODY - quoted - l->len + 1, s, n);
  if (quoted) l->text[l->len++] = '"';
  return LINE_BODY - l->len >= LOG_ESCAPED_SIZE(1); /* room for one more escape at least */
}

/* 2026-11-22T04:48:47.983Z. The part up to the seconds changes once a second: it is kept per
 * thread. */
static void put_timestamp(struct line *l) {
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
  char ts[24];
  memcpy(ts, cached, 19);
  int ms = (int)(tv.tv_usec / 1000);
  ts[19] = '.';
  ts[20] = (char)('0' + ms / 100);
  ts[21] = (char)('0' + ms / 10 % 10);
  ts[22] = (char)('0' + ms % 10);
  ts[23] = 'Z';
  put(l, ts, sizeof ts);
}

/* The time and level, up to where the message goes. */
static void start_line(struct line *l, enum log_level level) {
  static const char *const padded[] = {"error ", "warn  ", "info  ", "debug "};
  l->len = 0;
  l->json = atomic_load(&current_format) == LOG_FORMAT_JSON;
  if (l->json) {
    put_str(l, "{\"time\":\"");
    put_timestamp(l);
    put_str(l, "\",\"level\":\"");
    put_str(l, level_names[level]);
    put_str(l, "\",\"msg\":");
  } else {
    put_timestamp(l);
    put_str(l, " ");
    put_str(l, padded[level]);
  }
}

static void finish_line(struct line *l, enum log_level level) {
  if (l->json) l->text[l->len++] = '}';
  l->text[l->len++] = '\n';
  emit(l->text, l->len, level);
}

void log_vmsg(enum log_level level, const char *fmt, va_list ap) {
  if (!log_enabled(level)) return;
  char msg[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);
  struct line l;
  start_line(&l, level);
  put_text(&l, msg);
  finish_line(&l, level);
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
  struct line l;
  start_line(&l, level);
  bool room = put_text(&l, msg);
  for (size_t i = 0; i < count && room; i++) {
    const struct log_field *f = &fields[i];
    size_t before = l.len;
    room = put_str(&l, l.json ? ",\"" : " ") && put_str(&l, f->key) &&
           put_str(&l, l.json ? "\":" : "=");
    size_t key_end = l.len;
    if (room) room = f->str ? put_value(&l, f->str) : put_num(&l, f->num);
    if (l.len == key_end) l.len = before; /* a key without its value is left out */
  }
  finish_line(&l, level);
}

void log_strlist(enum log_level level, const char *prefix, const struct strlist *list) {
  for (size_t i = 0; i < list->count; i++) log_msg(level, "%s%s", prefix, list->items[i]);
}
