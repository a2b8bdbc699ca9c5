/* PROXY protocol encoding and parsing (against the specification's own examples), ticket key
 * files, log field escaping and threads, and the buffer pool's trimming. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "stapler/buf.h"
#include "stapler/log.h"
#include "stapler/proxy_protocol.h"
#include "stapler/tickets.h"
#include "stapler/util.h"
#include "testing.h"

static struct sockaddr_storage v4(const char *ip, uint16_t port) {
  struct sockaddr_storage ss = {0};
  struct sockaddr_in *in = (struct sockaddr_in *)&ss;
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  inet_pton(AF_INET, ip, &in->sin_addr);
  return ss;
}

static struct sockaddr_storage v6(const char *ip, uint16_t port) {
  struct sockaddr_storage ss = {0};
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  inet_pton(AF_INET6, ip, &in6->sin6_addr);
  return ss;
}

static void test_v1_write_spec_examples(void) {
  char out[PP_V1_MAX + 1];
  struct sockaddr_storage src = v4("192.168.0.1", 56324), dst = v4("192.168.0.11", 443);
  size_t n = pp_write_v1(out, sizeof out, (struct sockaddr *)&src, (struct sockaddr *)&dst);
  CHECK_EQ_INT(n, strlen("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"));
  CHECK_STR(out, "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  src = v6("2001:db8::1", 65535);
  dst = v6("2001:db8::2", 443);
  pp_write_v1(out, sizeof out, (struct sockaddr *)&src, (struct sockaddr *)&dst);
  CHECK_STR(out, "PROXY TCP6 2001:db8::1 2001:db8::2 65535 443\r\n");
  /* The longest line the specification allows fits in 107 bytes. */
  src = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
  dst = v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
  n = pp_write_v1(out, sizeof out, (struct sockaddr *)&src, (struct sockaddr *)&dst);
  CHECK_EQ_INT(n, 104);
}

static void test_v1_parse(void) {
  struct pp_info info;
  size_t used;
  const char *err;
  const char *line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /";
  CHECK_EQ_INT(pp_parse((const uint8_t *)line, strlen(line), &info, &used, &err), PP_OK);
  CHECK_EQ_INT(used, strlen(line) - 5);
  CHECK_EQ_INT(info.version, 1);
  CHECK(!info.local);
  char ip[64];
  inet_ntop(AF_INET, &((struct sockaddr_in *)&info.src)->sin_addr, ip, sizeof ip);
  CHECK_STR(ip, "192.168.0.1");
  CHECK_EQ_INT(ntohs(((struct sockaddr_in *)&info.src)->sin_port), 56324);
  CHECK_EQ_INT(ntohs(((struct sockaddr_in *)&info.dst)->sin_port), 443);
  const char *unknown = "PROXY UNKNOWN\r\n";
  CHECK_EQ_INT(pp_parse((const uint8_t *)unknown, strlen(unknown), &info, &used, &err), PP_OK);
  CHECK(info.local);
  const char *six = "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
  CHECK_EQ_INT(pp_parse((const uint8_t *)six, strlen(six), &info, &used, &err), PP_OK);
  CHECK_EQ_INT(info.src.ss_family, AF_INET6);
  /* Every prefix of a good line is incomplete, never bad. */
  for (size_t i = 1; i < strlen(line) - 6; i++)
    CHECK_EQ_INT(pp_parse((const uint8_t *)line, i, &info, &used, &err), PP_INCOMPLETE);
  static const char *const bad[] = {
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",   /* LF only */
      "PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n", /* two spaces */
      "PROXY TCP4 192.168.0.256 192.168.0.11 56324 443\r\n",
      "PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
      "PROXY TCP4 192.168.0.1 192.168.0.11 0443 443\r\n",
      "PROXY TCP4 2001:db8::1 192.168.0.11 1 2\r\n",
      "PROXY UDP4 192.168.0.1 192.168.0.11 1 2\r\n",
      "PROXY TCP4 192.168.0.1 192.168.0.11 1 2 extra\r\n",
      "PROXY TCP4 192.168.0.1\r\n", /* short lines: the missing fields were read unset */
      "PROXY TCP4\r\n",
      "PROXY \r\n",
      "GET / HTTP/1.1\r\n",
      "\x16\x03\x01\x02\x00",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    CHECK_EQ_INT(pp_parse((const uint8_t *)bad[i], strlen(bad[i]), &info, &used, &err), PP_BAD);
  /* A NUL would end the line for a C string function: refused, not truncated. */
  static const char nul[] = "PROXY TCP4 192.168.0.1 192.168.0.11 1 2\0junk\r\n";
  CHECK_EQ_INT(pp_parse((const uint8_t *)nul, sizeof nul - 1, &info, &used, &err), PP_BAD);
  char longline[200];
  memset(longline, 'a', sizeof longline);
  memcpy(longline, "PROXY ", 6);
  CHECK_EQ_INT(pp_parse((const uint8_t *)longline, sizeof longline, &info, &used, &err), PP_BAD);
}

static void test_v2_write_and_parse(void) {
  uint8_t out[256];
  struct sockaddr_storage src = v4("203.0.113.7", 51234), dst = v4("198.51.100.1", 443);
  static const uint8_t alpn[] = "http/1.1";
  size_t n = pp_write_v2(out, sizeof out, (struct sockaddr *)&src, (struct sockaddr *)&dst, alpn,
                         8, "example.com");
  static const uint8_t want[] = {
      0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
      0x21, 0x11, 0x00, 0x25,                                   /* PROXY, TCP4, 12 + 11 + 14 */
      203, 0, 113, 7, 198, 51, 100, 1, 0xc8, 0x22, 0x01, 0xbb,                /* addresses, ports */
      0x01, 0x00, 0x08, 'h', 't', 't', 'p', '/', '1', '.', '1',               /* PP2_TYPE_ALPN */
      0x02, 0x00, 0x0b, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm', /* AUTHORITY */
  };
  CHECK_EQ_INT(n, sizeof want);
  CHECK(n == sizeof want && !memcmp(out, want, n));
  struct pp_info info;
  size_t used;
  const char *err;
  CHECK_EQ_INT(pp_parse(out, n, &info, &used, &err), PP_OK);
  CHECK_EQ_INT(used, n);
  CHECK_EQ_INT(info.version, 2);
  CHECK_EQ_INT(ntohs(((struct sockaddr_in *)&info.src)->sin_port), 51234);
  for (size_t i = 1; i < n; i++) CHECK_EQ_INT(pp_parse(out, i, &info, &used, &err), PP_INCOMPLETE);
  /* IPv6, no TLVs: 16 + 36 bytes. */
  src = v6("2001:db8::7", 1);
  dst = v6("2001:db8::1", 443);
  n = pp_write_v2(out, sizeof out, (struct sockaddr *)&src, (struct sockaddr *)&dst, NULL, 0, NULL);
  CHECK_EQ_INT(n, 52);
  CHECK_EQ_INT(out[13], 0x21);
  CHECK_EQ_INT(pp_parse(out, n, &info, &used, &err), PP_OK);
  CHECK_EQ_INT(info.src.ss_family, AF_INET6);
  /* LOCAL command (health checks): no addresses. */
  uint8_t local[16];
  memcpy(local, want, 12);
  local[12] = 0x20;
  local[13] = 0x00;
  local[14] = local[15] = 0;
  CHECK_EQ_INT(pp_parse(local, 16, &info, &used, &err), PP_OK);
  CHECK(info.local);
  /* Bad version, bad family, oversized length. */
  memcpy(out, want, sizeof want);
  out[12] = 0x31;
  CHECK_EQ_INT(pp_parse(out, sizeof want, &info, &used, &err), PP_BAD);
  out[12] = 0x21;
  out[13] = 0x41; /* no such family */
  CHECK_EQ_INT(pp_parse(out, sizeof want, &info, &used, &err), PP_BAD);
  out[13] = 0x31; /* AF_UNIX (a client on the balancer's own host): addresses unknown */
  CHECK_EQ_INT(pp_parse(out, sizeof want, &info, &used, &err), PP_OK);
  CHECK(info.local);
  out[13] = 0x11;
  out[14] = 0xff;
  CHECK_EQ_INT(pp_parse(out, sizeof want, &info, &used, &err), PP_BAD);
}

static void test_ticket_key_file(void) {
  char path[] = "/tmp/stapler-tickets-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  const char *text = "# keys for stapler\n"
                     "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
                     "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
                     "00112233445566778899aabbccddeeff\n\n"
                     "  FFEEDDCCBBAA99887766554433221100FFEEDDCCBBAA99887766554433221100"
                     "FFEEDDCCBBAA99887766554433221100FFEEDDCCBBAA99887766554433221100"
                     "FFEEDDCCBBAA99887766554433221100  \n";
  CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  close(fd);
  char err[256];
  struct ticket_keys *k = tickets_load_file(path, err, sizeof err);
  CHECK(k != NULL);
  if (k) {
    CHECK_EQ_INT(k->count, 2);
    CHECK_EQ_INT(k->keys[0].name[1], 0x11);
    CHECK_EQ_INT(k->keys[1].aes[31], 0x00);
    CHECK_EQ_INT(k->keys[1].hmac[0], 0xff);
  }
  struct ticket_keys *r = tickets_rotate(k);
  CHECK_EQ_INT(r->count, 3);
  CHECK(!memcmp(&r->keys[1], &k->keys[0], sizeof r->keys[1]));
  struct ticket_keys *r2 = tickets_rotate(r);
  CHECK_EQ_INT(r2->count, TICKET_KEYS_KEPT);
  tickets_free(r2);
  tickets_free(r);
  tickets_free(k);
  fd = open(path, O_WRONLY | O_TRUNC);
  CHECK(write(fd, "0011\n", 5) == 5);
  close(fd);
  CHECK(tickets_load_file(path, err, sizeof err) == NULL);
  CHECK_CONTAINS(err, ":1: expected 160 hex digits");
  fd = open(path, O_WRONLY | O_TRUNC);
  CHECK(write(fd, "# nothing\n", 10) == 10);
  close(fd);
  CHECK(tickets_load_file(path, err, sizeof err) == NULL);
  CHECK_CONTAINS(err, "no key");
  unlink(path);
}

static void test_log_escape(void) {
  char out[LOG_ESCAPED_SIZE(64)];
  CHECK_EQ_INT(log_escape(out, sizeof out, "example.com", 11), 11);
  CHECK_STR(out, "example.com");
  log_escape(out, sizeof out, "evil\n2026 \"x\" \\", 15);
  CHECK_STR(out, "evil\\x0a2026 \\\"x\\\" \\\\");
  log_escape(out, sizeof out, "a\0b\x7f\x1b\xff\xc3\xa9", 8);
  CHECK_STR(out, "a\\x00b\\x7f\\x1b\\xff\\xc3\\xa9");
  /* Cut between escapes, never inside one. */
  CHECK_EQ_INT(log_escape(out, 6, "ab\ncd", 5), 2);
  CHECK_STR(out, "ab");
  CHECK_EQ_INT(log_escape(out, 7, "ab\ncd", 5), 6);
  CHECK_STR(out, "ab\\x0a");
  CHECK_EQ_INT(log_escape(out, 9, "ab\ncd", 5), 8);
  CHECK_STR(out, "ab\\x0acd");
}

static char logged[8192];
static size_t logged_len;

static void capture(const char *line, size_t len) {
  if (logged_len + len < sizeof logged) memcpy(logged + logged_len, line, len);
  logged_len += len;
  logged[logged_len < sizeof logged ? logged_len : 0] = '\0';
}

/* The part of a captured text line after "2026-11-22T04:48:47.983Z info  ". */
static const char *text_line(void) { return logged_len > 31 ? logged + 31 : ""; }

static void test_log_lines(void) {
  log_set_sink(capture);
  log_configure(LOG_INFO, LOG_FORMAT_TEXT);
  const struct log_field fields[] = {LOG_STR("sni", "example.com"), LOG_STR("path", "/a b\n"),
                                     LOG_STR("method", "G\xffT"), LOG_NUM("status", -1),
                                     LOG_STR("empty", ""), LOG_STR("eq", "a=b")};
  logged_len = 0;
  log_fields(LOG_INFO, "access", fields, ARRAY_SIZE(fields));
  CHECK_STR(text_line(), "access sni=example.com path=\"/a b\\x0a\" method=\"G\\xffT\" "
                         "status=-1 empty=\"\" eq=\"a=b\"\n");
  /* A message is one line of UTF-8 whatever it holds; UTF-8 text stays readable. */
  logged_len = 0;
  log_info("caf\xc3\xa9 %s", "two\nlines \xff \xc2\x85 \"q\"");
  CHECK_STR(text_line(), "caf\xc3\xa9 two\\x0alines \\xff \\xc2\\x85 \"q\"\n");

  log_configure(LOG_INFO, LOG_FORMAT_JSON);
  logged_len = 0;
  log_fields(LOG_INFO, "access", fields, ARRAY_SIZE(fields));
  CHECK_CONTAINS(logged, "\"msg\":\"access\",\"sni\":\"example.com\",\"path\":\"/a b\\\\x0a\","
                         "\"method\":\"G\\\\xffT\",\"status\":-1,\"empty\":\"\",\"eq\":\"a=b\"}\n");
  logged_len = 0;
  log_info("%s", "\"q\" \\ \x01 \xe2\x82");
  CHECK_CONTAINS(logged, "\"msg\":\"\\\"q\\\" \\\\ \\\\x01 \\\\xe2\\\\x82\"}\n");

  /* Cut short, a line still ends as it should: one line, a closed JSON object. */
  static char big[6000];
  memset(big, '\x01', sizeof big - 1);
  const struct log_field long_fields[] = {LOG_STR("a", big), LOG_NUM("n", 7)};
  logged_len = 0;
  log_fields(LOG_INFO, "access", long_fields, 2);
  CHECK(logged_len <= 4096);
  CHECK(logged_len > 4000);
  CHECK(!strcmp(logged + logged_len - 3, "\"}\n"));
  CHECK(strchr(logged, '\n') == logged + logged_len - 1);
  CHECK(!strstr(logged, "\"n\":"));
  log_configure(LOG_INFO, LOG_FORMAT_TEXT);
  logged_len = 0;
  log_fields(LOG_INFO, "access", long_fields, 2);
  CHECK(logged_len <= 4096);
  CHECK(!strcmp(logged + logged_len - 2, "\"\n"));
  CHECK(strchr(logged, '\n') == logged + logged_len - 1);
  log_set_sink(NULL);
}

/* Threads logging at once, through their own rings: every line reaches stderr whole, each
 * thread's lines in their order, and none goes missing without being counted as dropped. The
 * first threads exit and new ones take their rings, still holding unwritten lines (run under
 * ThreadSanitizer too). Order is promised per thread, so each thread has its own id. */
#define LOGGERS 4
#define LINES_EACH 10000

static void *log_lines_from_thread(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int i = 0; i < LINES_EACH; i++) log_info("logger=%d line=%d %s", id, i, "x");
  return NULL;
}

static void test_log_threads_do_not_share_a_lock(void) {
  char path[] = "/tmp/stapler-log-test-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  log_configure(LOG_INFO, LOG_FORMAT_TEXT);
  uint64_t dropped_before = log_dropped();
  log_async_start();
  pthread_t threads[LOGGERS];
  for (int i = 0; i < LOGGERS; i++)
    pthread_create(&threads[i], NULL, log_lines_from_thread, (void *)(intptr_t)i);
  for (int i = 0; i < LOGGERS; i++) pthread_join(threads[i], NULL);
  for (int i = 0; i < LOGGERS; i++) /* new threads: they reuse the rings given back */
    pthread_create(&threads[i], NULL, log_lines_from_thread, (void *)(intptr_t)(LOGGERS + i));
  for (int i = 0; i < LOGGERS; i++) pthread_join(threads[i], NULL);
  log_async_stop(10000);
  uint64_t dropped = log_dropped() - dropped_before;
  dup2(saved, STDERR_FILENO);
  close(saved);

  uint8_t *text = NULL;
  size_t len = 0;
  CHECK(!read_file(path, &text, &len, 64 << 20));
  unlink(path);
  close(fd);
  int next[2 * LOGGERS] = {0};
  uint64_t lines = 0;
  bool in_order = true, whole = true;
  char *save = NULL;
  text = xrealloc(text, len + 1);
  text[len] = 0;
  for (char *line = strtok_r((char *)text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    const char *at = strstr(line, "logger=");
    if (!at) continue; /* the dropped-lines warning, if any */
    int id, n;
    char tail[8];
    if (sscanf(at, "logger=%d line=%d %7s", &id, &n, tail) != 3 || strcmp(tail, "x") ||
        id < 0 || id >= 2 * LOGGERS) {
      whole = false;
      continue;
    }
    if (n < next[id]) in_order = false;
    next[id] = n + 1;
    lines++;
  }
  free(text);
  CHECK(whole);
  CHECK(in_order);
  CHECK_EQ_INT((long long)(lines + dropped), 2LL * LOGGERS * LINES_EACH);
}

/* The writer sleeps while nothing is queued and the next line wakes it. A wake-up lost in
 * the window where the writer decides to sleep would leave a line unwritten for good: lines
 * come one at a time, at irregular moments around that window, and each must reach stderr. */
static bool file_holds(int fd, const char *text) {
  char buf[65536];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return false;
  buf[n] = 0;
  return strstr(buf, text) != NULL;
}

static void test_log_line_after_idle_is_written(void) {
  char path[] = "/tmp/stapler-log-test-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  log_configure(LOG_INFO, LOG_FORMAT_TEXT);
  log_async_start();
  bool all = true;
  for (int i = 0; i < 60 && all; i++) {
    char want[32];
    snprintf(want, sizeof want, "idle-line=%d\n", i);
    log_info("idle-line=%d", i);
    struct timespec pause = {0, (long)(i % 7) * 150000L}; /* 0 to 0.9 ms */
    nanosleep(&pause, NULL);
    bool seen = false;
    for (int wait = 0; wait < 400 && !seen; wait++) { /* up to 2 s; lines take ~0.1 s */
      seen = file_holds(fd, want);
      if (!seen) usleep(5000);
    }
    all = seen;
  }
  log_async_stop(1000);
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fd);
  unlink(path);
  CHECK(all);
}

/* Buffers a peak left behind go back at the second trim after it, all but the `keep` asked
 * for; buffers used in between are not taken. */
static void test_buffer_pool_trim(void) {
  struct bufpool pool;
  bufpool_init(&pool, 512);
  struct buf *held[100];
  for (int i = 0; i < 100; i++) held[i] = buf_get(&pool);
  CHECK_EQ_INT((long long)bufpool_in_use(&pool), 100);
  for (int i = 0; i < 100; i++) buf_put(held[i]);
  CHECK_EQ_INT((long long)bufpool_free_count(&pool), 100);
  /* They were in use during this period: kept. */
  CHECK_EQ_INT((long long)bufpool_trim(&pool, 4), 0);
  /* Unused through the next one: all but 4 freed. */
  CHECK_EQ_INT((long long)bufpool_trim(&pool, 4), 96);
  CHECK_EQ_INT((long long)bufpool_free_count(&pool), 4);
  /* A smaller peak: 10 taken (4 from the pool), returned; kept for a period, then trimmed. */
  for (int i = 0; i < 10; i++) held[i] = buf_get(&pool);
  for (int i = 0; i < 10; i++) buf_put(held[i]);
  CHECK_EQ_INT((long long)bufpool_trim(&pool, 4), 0);
  /* Steady use of 3 buffers keeps what it needs and the rest goes. */
  for (int i = 0; i < 3; i++) held[i] = buf_get(&pool);
  for (int i = 0; i < 3; i++) buf_put(held[i]);
  CHECK_EQ_INT((long long)bufpool_trim(&pool, 4), 3);
  CHECK_EQ_INT((long long)bufpool_free_count(&pool), 7);
  CHECK_EQ_INT((long long)bufpool_in_use(&pool), 0);
  bufpool_destroy(&pool);
}

TEST_MAIN({
  RUN(test_v1_write_spec_examples);
  RUN(test_v1_parse);
  RUN(test_v2_write_and_parse);
  RUN(test_ticket_key_file);
  RUN(test_log_escape);
  RUN(test_log_lines);
  RUN(test_log_threads_do_not_share_a_lock);
  RUN(test_log_line_after_idle_is_written);
  RUN(test_buffer_pool_trim);
})
