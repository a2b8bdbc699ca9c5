/* Config loading: every kind of error names FILE:LINE:COLUMN, the key and what was expected;
 * files that would stall the loader, or make it work without end, are refused at once. */
#include <fcntl.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stapler/config.h"
#include "stapler/strbuf.h"
#include "testing.h"

static const char *kBase =
    "listen:\n"
    "  - address: 127.0.0.1:8443\n"
    "backend:\n"
    "  address: 127.0.0.1:4000\n"
    "certificates:\n"
    "  - cert: certs/a.pem\n"
    "    key: certs/a.key\n";

static struct config *load(const char *yaml, struct strlist *errors) {
  return config_load_string("test.yaml", "/etc/stapler", yaml, strlen(yaml), errors);
}

/* Loads `yaml`, expects failure, and checks that the first error contains `want`. */
static void expect_error(const char *yaml, const char *want) {
  struct strlist errors = {0};
  struct config *cfg = load(yaml, &errors);
  CHECK(cfg == NULL);
  CHECK(errors.count >= 1);
  if (errors.count) CHECK_CONTAINS(errors.items[0], want);
  config_free(cfg);
  strlist_free(&errors);
}

static void test_minimal_and_defaults(void) {
  struct strlist errors = {0};
  struct config *cfg = load(kBase, &errors);
  CHECK(cfg != NULL);
  CHECK_EQ_INT(errors.count, 0);
  if (!cfg) return;
  CHECK_EQ_INT(cfg->listen_count, 1);
  CHECK_EQ_INT(cfg->listen[0].addr.port, 8443);
  CHECK_STR(cfg->certs[0].cert, "/etc/stapler/certs/a.pem");
  CHECK_EQ_INT(cfg->backend.mode, BACKEND_MODE_HTTP);
  CHECK(cfg->backend.forwarded_headers);
  CHECK_EQ_INT(cfg->backend.connect_timeout_ms, 5000);
  CHECK_EQ_INT(cfg->tls.min_version, TLS1_2_VERSION);
  CHECK_EQ_INT(cfg->tls.alpn_count, 2); /* http mode: h2 first */
  CHECK_STR(cfg->tls.alpn[0], "h2");
  CHECK_STR(cfg->tls.alpn[1], "http/1.1");
  CHECK_EQ_INT(cfg->backend.keepalive_ms, 4000);
  CHECK_EQ_INT(cfg->backend.upgrade_count, 1);
  CHECK_STR(cfg->backend.upgrades[0], "websocket");
  CHECK_EQ_INT(cfg->timeouts.idle_ms, 300000);
  CHECK_EQ_INT(cfg->limits.max_header_bytes, 32768);
  CHECK(!cfg->admin.enabled);
  CHECK_EQ_INT(cfg->ocsp.policy, OCSP_POLICY_LENIENT);
  config_free(cfg);
}

static void test_full_schema(void) {
  const char *yaml =
      "listen:\n"
      "  - address: 0.0.0.0:443\n"
      "    proxy_protocol: false\n"
      "  - address: \"[::1]:8443\"\n"
      "    proxy_protocol: true\n"
      "backend:\n"
      "  address: unix:/run/app.sock\n"
      "  mode: tcp\n"
      "  proxy_protocol: v2\n"
      "  forwarded_headers: false\n"
      "  connect_timeout: 500ms\n"
      "certificates:\n"
      "  - cert: /abs/a.pem\n"
      "    key: a.key\n"
      "    ocsp_response: a.der\n"
      "    ocsp_url: http://ocsp.example.net/\n"
      "default_name: Example.COM\n"
      "tls:\n"
      "  min_version: \"1.3\"\n"
      "  alpn: [h2, http/1.1]\n"
      "  session_tickets: false\n"
      "  ticket_key_file: null\n"
      "ocsp:\n"
      "  fetch: false\n"
      "  cache_dir: cache\n"
      "  policy: must-staple\n"
      "  timeout: 2s\n"
      "workers: 3\n"
      "timeouts: { handshake: 1s, request_header: 2m, idle: 1h, shutdown: 5s }\n"
      "limits: { max_connections: 100, max_header_bytes: 4096 }\n"
      "admin:\n"
      "  address: 127.0.0.1:9443\n"
      "log:\n"
      "  level: debug\n"
      "  format: json\n"
      "  access: false\n";
  struct strlist errors = {0};
  struct config *cfg = load(yaml, &errors);
  for (size_t i = 0; i < errors.count; i++) fprintf(stderr, "  %s\n", errors.items[i]);
  CHECK(cfg != NULL);
  if (!cfg) return;
  CHECK_EQ_INT(cfg->listen_count, 2);
  CHECK(cfg->listen[1].proxy_protocol);
  CHECK_EQ_INT(cfg->listen[1].addr.ss.ss_family, AF_INET6);
  CHECK_STR(cfg->backend.addr.unix_path, "/run/app.sock");
  CHECK_EQ_INT(cfg->backend.mode, BACKEND_MODE_TCP);
  CHECK_EQ_INT(cfg->backend.proxy_protocol, PROXY_PROTOCOL_V2);
  CHECK_EQ_INT(cfg->backend.connect_timeout_ms, 500);
  CHECK_STR(cfg->certs[0].cert, "/abs/a.pem");
  CHECK_STR(cfg->certs[0].ocsp_response, "/etc/stapler/a.der");
  CHECK_STR(cfg->default_name, "example.com");
  CHECK_EQ_INT(cfg->tls.min_version, TLS1_3_VERSION);
  CHECK_EQ_INT(cfg->tls.alpn_count, 2);
  CHECK(cfg->tls.ticket_key_file == NULL);
  CHECK_STR(cfg->ocsp.cache_dir, "/etc/stapler/cache");
  CHECK_EQ_INT(cfg->ocsp.policy, OCSP_POLICY_MUST_STAPLE);
  CHECK_EQ_INT(cfg->workers, 3);
  CHECK_EQ_INT(cfg->timeouts.request_header_ms, 120000);
  CHECK_EQ_INT(cfg->timeouts.idle_ms, 3600000);
  CHECK_EQ_INT(cfg->limits.max_connections, 100);
  CHECK(cfg->admin.enabled);
  CHECK_EQ_INT(cfg->log.level, LOG_DEBUG);
  CHECK_EQ_INT(cfg->log.format, LOG_FORMAT_JSON);
  config_free(cfg);
  strlist_free(&errors);
}

static void test_error_positions(void) {
  /* Unknown key, with its position and the allowed keys. */
  char yaml[1024];
  snprintf(yaml, sizeof yaml, "%sbakend: {}\n", kBase);
  expect_error(yaml, "test.yaml:8:1: bakend: unknown key (expected one of: listen, backend");
  snprintf(yaml, sizeof yaml, "%stimeouts:\n  idle: 10 seconds\n", kBase);
  expect_error(yaml, "test.yaml:9:9: timeouts.idle: expected a duration like 500ms, 10s, 5m or "
                     "12h, got '10 seconds'");
  snprintf(yaml, sizeof yaml, "%stimeouts:\n  idle: 0s\n", kBase);
  expect_error(yaml, "timeouts.idle: expected a duration greater than zero");
  snprintf(yaml, sizeof yaml, "%sworkers: many\n", kBase);
  expect_error(yaml, "test.yaml:8:10: workers: expected a whole number from 1 to 256");
  snprintf(yaml, sizeof yaml, "%slimits: { max_header_bytes: 10 }\n", kBase);
  expect_error(yaml, "limits.max_header_bytes: expected a whole number from 1024 to 1048576");
  snprintf(yaml, sizeof yaml, "%socsp:\n  policy: paranoid\n", kBase);
  expect_error(yaml, "test.yaml:9:11: ocsp.policy: expected one of lenient | strict | "
                     "must-staple, got 'paranoid'");
  snprintf(yaml, sizeof yaml, "%slog:\n  access: maybe\n", kBase);
  expect_error(yaml, "log.access: expected true or false, got 'maybe'");
  snprintf(yaml, sizeof yaml, "%stls:\n  min_version: \"1.1\"\n", kBase);
  expect_error(yaml, "tls.min_version: expected one of 1.2 | 1.3, got '1.1'");
  snprintf(yaml, sizeof yaml, "%stls:\n  alpn: [h3]\n", kBase);
  expect_error(yaml, "tls.alpn: expected http/1.1 or h2, got 'h3'");
  expect_error("listen:\n  - address: 127.0.0.1:8443\nbackend:\n  address: 127.0.0.1:4000\n"
               "  upgrades: [h2c]\ncertificates:\n  - cert: a.pem\n    key: a.key\n",
               "h2c cannot be tunnelled");
  snprintf(yaml, sizeof yaml, "%stimeouts: 5s\n", kBase);
  expect_error(yaml, "test.yaml:8:11: timeouts: expected a mapping, got a scalar");
  snprintf(yaml, sizeof yaml, "%sadmin:\n  port: 9443\n", kBase);
  expect_error(yaml, "admin.port: unknown key (expected one of: address)");
}

static void test_structure_errors(void) {
  expect_error("", "test.yaml:1:1: the file is empty");
  expect_error("listen: [\n", "test.yaml:2:1: YAML syntax");
  expect_error("- a\n- b\n", "test.yaml:1:1: expected a mapping, got a list");
  expect_error("listen:\n  - address: 127.0.0.1:99999\n",
               "test.yaml:2:14: listen[0].address: expected a port from 1 to 65535");
  expect_error("listen:\n  - address: 127.0.0.1\n", "listen[0].address: expected host:port");
  expect_error("listen:\n  - address: ::1:443\n", "IPv6 addresses are written [addr]:port");
  expect_error("listen:\n  - address: unix:/tmp/x\n", "unix sockets are not allowed here");
  expect_error("listen:\n  - proxy_protocol: true\n", "listen[0]: missing key 'address'");
  expect_error("listen: []\n", "listen: expected at least one address");
  expect_error("listen:\n  - address: 127.0.0.1:1\nlisten:\n  - address: 127.0.0.1:2\n",
               "test.yaml:3:1: listen: key given twice");
  expect_error("backend:\n  address: 127.0.0.1:1\n  mode: udp\n",
               "test.yaml:3:9: backend.mode: expected one of http | tcp, got 'udp'");
  expect_error("backend:\n  address: 127.0.0.1:1\n  proxy_protocol: v3\n",
               "backend.proxy_protocol: expected one of off | v1 | v2");
  expect_error("backend:\n  address: unix:relative\n", "expected an absolute path after unix:");
  expect_error("certificates:\n  - key: a.key\n", "test.yaml:2:5: certificates[0]: missing key "
                                                  "'cert'");
  expect_error("certificates:\n  - cert: a.pem\n    key: a.key\n    ocsp_url: ftp://x/\n",
               "ocsp_url: expected an http:// URL");
  /* Missing required sections are named. */
  expect_error("log: {level: info}\n", "listen: missing");
}

static void test_all_errors_reported(void) {
  struct strlist errors = {0};
  struct config *cfg = load("workers: x\nlog:\n  level: loud\nfoo: 1\n", &errors);
  CHECK(cfg == NULL);
  CHECK_EQ_INT(errors.count, 3);
  strlist_free(&errors);
}

static void test_default_config(void) {
  struct config *cfg = config_default();
  CHECK_EQ_INT(cfg->listen[0].addr.port, 8443);
  CHECK_EQ_INT(cfg->backend.addr.port, 4000);
  CHECK_STR(cfg->default_name, "localhost");
  config_free(cfg);
}

static double seconds_since(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Loads `path`, expects failure within a second, and checks the first error. */
static void expect_file_error(const char *path, const char *want) {
  struct strlist errors = {0};
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  struct config *cfg = config_load(path, &errors);
  CHECK(seconds_since(&t0) < 1.0);
  CHECK(cfg == NULL);
  CHECK(errors.count >= 1);
  if (errors.count) CHECK_CONTAINS(errors.items[0], want);
  config_free(cfg);
  strlist_free(&errors);
}

/* Opens the FIFO for writing once someone reads it (so that a reader that waits for a writer
 * is let go after a while, instead of hanging the test), giving up after 3 seconds. */
static void *release_fifo(void *path) {
  for (int i = 0; i < 60; i++) {
    int fd = open(path, O_WRONLY | O_NONBLOCK);
    if (fd >= 0) {
      close(fd);
      return NULL;
    }
    usleep(50 * 1000);
  }
  return NULL;
}

static void test_files_that_are_not_regular(void) {
  char dir[] = "/tmp/stapler-config-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  expect_file_error(dir, "it is a directory");
  char fifo[64];
  snprintf(fifo, sizeof fifo, "%s/fifo.yaml", dir);
  CHECK(mkfifo(fifo, 0600) == 0);
  pthread_t releaser;
  pthread_create(&releaser, NULL, release_fifo, fifo);
  expect_file_error(fifo, "fifo.yaml: cannot read the config file: it is a FIFO, not a regular "
                          "file");
  pthread_join(releaser, NULL);
  unlink(fifo);
  rmdir(dir);
  expect_file_error("/dev/null", "it is a device, not a regular file");
  expect_file_error("/nonexistent/stapler.yaml", "No such file or directory");
}

static void test_bytes_that_are_not_utf8(void) {
  char yaml[1024];
  /* The position of the byte itself, counted in characters like every other position. */
  snprintf(yaml, sizeof yaml, "%slog:\n  level: \"d\xc3\xa9\xff\"\n", kBase);
  expect_error(yaml, "test.yaml:9:13: ");
  expect_error(yaml, "not UTF-8");
  expect_error("\xfe\n", "test.yaml:1:1: ");
  expect_error("listen:\n\n  - address: \x01\n", "test.yaml:3:14: ");
}

static void expect_quick_error(const char *yaml, const char *want) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  expect_error(yaml, want);
  CHECK(seconds_since(&t0) < 1.0);
}

static void test_nesting_and_aliases_are_bounded(void) {
  /* Deep nesting: libyaml alone would take seconds, then minutes. */
  struct strbuf b = {0};
  strbuf_printf(&b, "x: ");
  for (int i = 0; i < 80000; i++) strbuf_printf(&b, "[");
  expect_quick_error(b.data, "test.yaml:1:67: nesting deeper than 64 levels");
  strbuf_free(&b);
  strbuf_printf(&b, "x: ");
  for (int i = 0; i < 63; i++) strbuf_printf(&b, "[");
  for (int i = 0; i < 63; i++) strbuf_printf(&b, "]");
  expect_error(b.data, "x: unknown key"); /* 64 levels are fine */
  strbuf_free(&b);

  /* Many aliases, or aliases that stand for far more than the file holds. */
  strbuf_printf(&b, "a: &x 1\nb: [");
  for (int i = 0; i < 300; i++) strbuf_printf(&b, "*x, ");
  strbuf_printf(&b, "*x]\n");
  expect_quick_error(b.data, "test.yaml:2:1029: more than 256 aliases");
  strbuf_free(&b);
  strbuf_printf(&b, "x0: &a {");
  for (int i = 0; i < 10; i++) strbuf_printf(&b, "k%d: 1, ", i);
  strbuf_printf(&b, "k: 1}\n");
  for (int level = 1; level < 5; level++) {
    strbuf_printf(&b, "x%d: &%c [", level, 'a' + level);
    for (int i = 0; i < 10; i++) strbuf_printf(&b, "*%c, ", 'a' + level - 1);
    strbuf_printf(&b, "0]\n");
  }
  strbuf_printf(&b, "listen: *e\n");
  expect_quick_error(b.data, "test.yaml:4:");
  expect_quick_error(b.data, "aliases stand for more than 10000 values");
  strbuf_free(&b);
  strbuf_printf(&b, "a: [");
  for (int i = 0; i < 300; i++) strbuf_printf(&b, "&a%d 1, ", i);
  strbuf_printf(&b, "0]\n");
  expect_quick_error(b.data, "more than 256 anchors");
  strbuf_free(&b);
  expect_error("listen: &l [*l]\n", "test.yaml:1:13: alias *l inside the value it names");

  /* An alias that is used as YAML means it. */
  char yaml[1024];
  snprintf(yaml, sizeof yaml, "%s    ocsp_response: &r certs/a.der\n"
                              "  - cert: certs/b.pem\n    key: certs/b.key\n"
                              "    ocsp_response: *r\n", kBase);
  struct strlist errors = {0};
  struct config *cfg = load(yaml, &errors);
  CHECK(cfg != NULL);
  if (cfg) CHECK_STR(cfg->certs[1].ocsp_response, "/etc/stapler/certs/a.der");
  config_free(cfg);
  strlist_free(&errors);
}

TEST_MAIN({
  RUN(test_minimal_and_defaults);
  RUN(test_full_schema);
  RUN(test_error_positions);
  RUN(test_structure_errors);
  RUN(test_all_errors_reported);
  RUN(test_default_config);
  RUN(test_files_that_are_not_regular);
  RUN(test_bytes_that_are_not_utf8);
  RUN(test_nesting_and_aliases_are_bounded);
})
