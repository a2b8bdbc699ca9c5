#include "stapler/util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

bool read_file(const char *path, uint8_t **out, size_t *out_len, size_t max_len) {
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  size_t cap = 4096, len = 0;
  uint8_t *buf = xmalloc(cap);
  for (;;) {
    if (len == cap) {
      if (cap >= max_len) {
        free(buf);
        fclose(f);
        errno = EFBIG;
        return false;
      }
      cap = MIN(cap * 2, max_len);
      buf = xrealloc(buf, cap);
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0) break;
    len += n;
  }
  bool ok = !ferror(f);
  fclose(f);
  if (!ok) {
    free(buf);
    errno = EIO;
    return false;
  }
  *out = buf;
  *out_len = len;
  return true;
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
