/* HTTP/1.1 on the wire: the reader's checks (what is refused and with which status), and what
 * the writers make of what it read (the request as the backend gets it, the response as the
 * client gets it). The forwarding logic around them is tested end to end in
 * tests/integration/test_forwarding.py and test_desync.py. */
#include "stapler/http1.h"
#include "testing.h"

static char *kUpgrades[] = {"websocket"};
static const char kForwarding[] =
    "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n";

/* What a reader saw, and what the writers made of it. */
struct model {
  struct http1_reader r;
  char out[65536];
  size_t out_len;
  int heads, ends;
  enum http_framing framing; /* how bodies are written out */
  bool response;
  int client_minor;
};

static void out_emit(void *ctx, const uint8_t *d, size_t n) {
  struct model *m = ctx;
  if (m->out_len + n < sizeof m->out) memcpy(m->out + m->out_len, d, n), m->out_len += n;
  m->out[m->out_len] = 0;
}

static void on_head(void *ctx) {
  struct model *m = ctx;
  struct http1_writer w = {.emit = out_emit, .ctx = m};
  m->heads++;
  if (m->response) {
    bool close;
    m->framing = http1_client_framing(&m->r.head, m->client_minor, &close);
    http1_write_response(&w, &m->r.head, m->framing, close);
  } else {
    m->framing = m->r.head.framing;
    http1_write_request(&w, &m->r.head, m->r.head.version_minor, kForwarding,
                        sizeof kForwarding - 1);
  }
}

static void on_body(void *ctx, const uint8_t *d, size_t n) {
  struct model *m = ctx;
  struct http1_writer w = {.emit = out_emit, .ctx = m};
  http1_write_body(&w, m->framing, d, n);
}

static void on_end(void *ctx) {
  struct model *m = ctx;
  struct http1_writer w = {.emit = out_emit, .ctx = m};
  m->ends++;
  http1_write_end(&w, m->framing, &m->r.head, m->r.in_trailers ? m->r.trailer_from : 0);
}

static const struct http1_reader_events kEvents = {on_head, on_body, on_end};

static void request_model(struct model *m, size_t limit) {
  memset(m, 0, sizeof *m);
  http1_reader_init(&m->r, HTTP_REQUEST, &kEvents, m, limit);
  m->r.upgrades = kUpgrades;
  m->r.upgrade_count = 1;
}

static void response_model(struct model *m, bool to_head, int client_minor) {
  memset(m, 0, sizeof *m);
  http1_reader_init(&m->r, HTTP_RESPONSE, &kEvents, m, 32768);
  m->response = true;
  m->r.response_to_head = to_head;
  m->client_minor = client_minor;
}

static size_t feed(struct model *m, const char *s) {
  return http1_reader_feed(&m->r, (const uint8_t *)s, strlen(s));
}

static void test_request_rewritten_for_the_backend(void) {
  struct model m;
  request_model(&m, 32768);
  const char *req = "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 6.6.6.6\r\n"
                    "x-forwarded-proto: http\r\nForwarded: for=6.6.6.6\r\nAccept:  */*  \r\n"
                    "Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n"
                    "TE: trailers\r\nProxy-Connection: x\r\n\r\n";
  CHECK_EQ_INT(feed(&m, req), strlen(req));
  CHECK_EQ_INT(m.r.state, HTTP1_READER_DONE);
  CHECK_STR(m.out, "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
                   "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n"
                   "X-Forwarded-Port: 443\r\n\r\n");
  http1_reader_free(&m.r);
}

static void test_chunked_request_reframed_and_trailers_filtered(void) {
  struct model m;
  request_model(&m, 32768);
  const char *req = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5;ext=\"v\"\r\nhello\r\n000A\r\n0123456789\r\n0\r\nTrailer-A: b\r\n"
                    "Content-Length: 9\r\nHost: evil\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
  CHECK_EQ_INT(feed(&m, req), strlen(req));
  CHECK_CONTAINS(m.out, "Transfer-Encoding: chunked\r\nX-Forwarded-For: 192.0.2.7");
  CHECK_CONTAINS(m.out, "\r\n\r\n5\r\nhello\r\na\r\n0123456789\r\n0\r\nTrailer-A: b\r\n\r\n");
  CHECK(strstr(m.out, "Content-Length") == NULL);
  CHECK(strstr(m.out, "evil") == NULL);
  CHECK(strstr(m.out, "6.6.6.6") == NULL);
  http1_reader_free(&m.r);
}

static void test_pipelined_requests_wait_their_turn(void) {
  struct model m;
  request_model(&m, 32768);
  const char *r1 = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n";
  const char *both = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
  size_t used = feed(&m, both);
  CHECK_EQ_INT(used, strlen(r1));
  CHECK(strstr(m.out, "/2") == NULL);
  CHECK_EQ_INT(feed(&m, both + used), 0); /* paused until the owner says next */
  http1_reader_next(&m.r);
  CHECK_EQ_INT(feed(&m, both + used), strlen(both) - used);
  CHECK_CONTAINS(m.out, "GET /2 HTTP/1.1");
  CHECK_EQ_INT(m.heads, 2);
  http1_reader_free(&m.r);
}

static void test_byte_by_byte_same_output(void) {
  /* Chunks are re-framed per read, so compare a Content-Length body byte for byte. */
  const char *req = "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nwiki";
  struct model whole, bytes;
  request_model(&whole, 32768);
  feed(&whole, req);
  request_model(&bytes, 32768);
  for (size_t i = 0; req[i]; i++)
    CHECK_EQ_INT(http1_reader_feed(&bytes.r, (const uint8_t *)req + i, 1), 1);
  CHECK_STR(bytes.out, whole.out);
  CHECK_EQ_INT(bytes.ends, 1);
  http1_reader_free(&whole.r);
  http1_reader_free(&bytes.r);
}

/* Requests that could be read two ways, or that stapler does not forward, are refused with
 * their status, and nothing of them is written. */
static void expect_refused(const char *req, int status) {
  struct model m;
  request_model(&m, 32768);
  feed(&m, req);
  if (m.r.error_status != status) fprintf(stderr, "  request: %s\n", req);
  CHECK_EQ_INT(m.r.state, HTTP1_READER_FAILED);
  CHECK_EQ_INT(m.r.error_status, status);
  CHECK_EQ_INT(m.heads, 0);
  http1_reader_free(&m.r);
}

static void test_smuggling_vectors_refused(void) {
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: "
                 "chunked\r\n\r\n0\r\n\r\n", 400);
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: "
                 "3\r\n\r\n0\r\n\r\n", 400);
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                 400);
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                 400);
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n", 400);
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", 400);
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                 400);
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400);
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
  expect_refused("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", 400);
  expect_refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX: a\001b\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\nX\x7f: a\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.1\r\nHost: x\r\n Folded: obs-fold\r\n\r\n", 400);
  expect_refused("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400);
  expect_refused("GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400);
  expect_refused("GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400);
  expect_refused("GET a HTTP/1.1\r\nHost: x\r\n\r\n", 400);
  expect_refused("GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400);
  expect_refused("GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505);
  expect_refused("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505);
  expect_refused("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);
  expect_refused("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405);
  expect_refused("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400);
  static const char *const bad_hosts[] = {"a b", "a/b", "user@x", "x:99999", "x:1:2", "[::1",
                                          "", "x,y", "x:", "[]", "a%20b", "x:80a"};
  for (size_t i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
    char req[256];
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", bad_hosts[i]);
    expect_refused(req, 400);
  }
}

static void test_hosts_accepted(void) {
  static const char *const good[] = {"example.com", "example.com:8443", "127.0.0.1:1",
                                     "[::1]:443", "[2001:db8::1]", "xn--bcher-kva.example"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    struct model m;
    request_model(&m, 32768);
    char req[256];
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", good[i]);
    feed(&m, req);
    CHECK_EQ_INT(m.r.state, HTTP1_READER_DONE);
    http1_reader_free(&m.r);
  }
}

static void test_absolute_form_and_http10(void) {
  struct model m;
  request_model(&m, 32768);
  feed(&m, "GET http://app.example:8080?q=1 HTTP/1.1\r\nHost: other\r\n\r\n");
  CHECK_CONTAINS(m.out, "GET /?q=1 HTTP/1.1\r\nHost: app.example:8080\r\nX-Forwarded-For");
  CHECK(strstr(m.out, "other") == NULL);
  http1_reader_free(&m.r);
  request_model(&m, 32768);
  feed(&m, "OPTIONS * HTTP/1.0\r\n\r\n");
  CHECK_STR(m.out, "OPTIONS * HTTP/1.0\r\nX-Forwarded-For: 192.0.2.7\r\n"
                   "X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n\r\n");
  http1_reader_free(&m.r);
  request_model(&m, 32768);
  feed(&m, "POST /form HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_CONTAINS(m.out, "Content-Length: 0\r\n"); /* a POST without a body says so */
  http1_reader_free(&m.r);
}

static void test_upgrades(void) {
  struct model m;
  request_model(&m, 32768);
  feed(&m, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo, WebSocket\r\n"
           "\r\n");
  CHECK_CONTAINS(m.out, "Connection: upgrade\r\nUpgrade: WebSocket\r\n");
  CHECK(strstr(m.out, "foo") == NULL);
  http1_reader_free(&m.r);
  request_model(&m, 32768);
  const char *h2c = "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                    "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\nNEXT";
  size_t used = feed(&m, h2c);
  CHECK_EQ_INT(used, strlen(h2c) - 4);
  CHECK(strstr(m.out, "h2c") == NULL);
  CHECK(strstr(m.out, "HTTP2-Settings") == NULL);
  CHECK(strstr(m.out, "Upgrade") == NULL);
  CHECK_EQ_INT(m.r.head.upgrade_len, 0);
  http1_reader_next(&m.r); /* refused upgrade: the next bytes are HTTP again */
  feed(&m, "GET /n HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK_CONTAINS(m.out, "GET /n HTTP/1.1");
  http1_reader_free(&m.r);
  /* A 101 must accept what was asked. */
  struct http_head req = {0}, res = {0};
  http_head_reset(&req);
  req.upgrade_off = http_head_store(&req, "websocket", 9);
  req.upgrade_len = 9;
  res.upgrade_off = http_head_store(&res, "WebSocket/13", 12);
  res.upgrade_len = 12;
  CHECK(http1_upgrade_accepted(&req, &res));
  res.upgrade_off = http_head_store(&res, "h2c", 3);
  res.upgrade_len = 3;
  CHECK(!http1_upgrade_accepted(&req, &res));
  http_head_free(&req);
  http_head_free(&res);
}

static void test_header_limit(void) {
  struct model m;
  request_model(&m, 1024);
  char req[4096];
  int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
  memset(req + n, 'a', 1100);
  strcpy(req + n + 1100, "\r\n\r\n");
  feed(&m, req);
  CHECK_EQ_INT(m.r.error_status, 431);
  CHECK_EQ_INT(m.out_len, 0);
  http1_reader_free(&m.r);
}

static void test_responses(void) {
  struct model m;
  response_model(&m, false, 1);
  feed(&m, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, X-Hop\r\n"
           "X-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\n");
  CHECK_STR(m.out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                   "0\r\nX-Sum: 1\r\n\r\n");
  CHECK(http1_reader_keep_alive(&m.r));
  http1_reader_free(&m.r);
  /* An HTTP/1.0 client gets the body unchunked, delimited by the close. */
  response_model(&m, false, 0);
  feed(&m, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  CHECK_STR(m.out, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc");
  http1_reader_free(&m.r);
  /* A close-delimited body ends with the backend's connection. */
  response_model(&m, false, 1);
  feed(&m, "HTTP/1.0 200 OK\r\n\r\nbody until close");
  CHECK(http1_reader_needs_eof(&m.r));
  CHECK(http1_reader_eof(&m.r));
  CHECK_EQ_INT(m.ends, 1);
  CHECK(!http1_reader_keep_alive(&m.r));
  CHECK_STR(m.out, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until close");
  http1_reader_free(&m.r);
}

/* RFC 9112 6.3: these end at the blank line whatever they announce; what follows is not
 * theirs. */
static void expect_bodiless(const char *res, bool to_head, const char *client_sees) {
  struct model m;
  response_model(&m, to_head, 1);
  size_t used = feed(&m, res);
  CHECK_EQ_INT(m.r.state, HTTP1_READER_DONE);
  CHECK_EQ_INT(used, strstr(res, "\r\n\r\n") + 4 - res);
  CHECK_STR(m.out, client_sees);
  http1_reader_free(&m.r);
}

static void test_bodiless_responses(void) {
  expect_bodiless("HTTP/1.1 304 Not Modified\r\ncontent-length: 1234\r\n\r\nXYZ", false,
                  "HTTP/1.1 304 Not Modified\r\ncontent-length: 1234\r\n\r\n");
  expect_bodiless("HTTP/1.1 204 No Content\r\nContent-Length: 43\r\n\r\nHTTP/1.1 200 OK\r\n",
                  false, "HTTP/1.1 204 No Content\r\n\r\n");
  expect_bodiless("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nXYZ", true,
                  "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
  expect_bodiless("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nXYZ", true,
                  "HTTP/1.1 200 OK\r\n\r\n");
  expect_bodiless("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200", false,
                  "HTTP/1.1 100 Continue\r\n\r\n");
  expect_bodiless("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nContent-Length: 5\r\n\r\nXY",
                  false, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
  expect_bodiless("HTTP/1.1 199 Odd\r\nContent-Length: 5\r\n\r\nXY", false,
                  "HTTP/1.1 199 Odd\r\n\r\n");
}

static void test_101(void) {
  struct model m;
  response_model(&m, false, 1);
  const char *res = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                    "Upgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\r\nFRAME";
  size_t used = feed(&m, res);
  CHECK_EQ_INT(used, strlen(res) - 5);
  CHECK_EQ_INT(m.r.head.status, 101);
  CHECK_STR(m.out, "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n"
                   "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
  http1_reader_free(&m.r);
}

static void expect_bad_response(const char *res) {
  struct model m;
  response_model(&m, false, 1);
  feed(&m, res);
  CHECK_EQ_INT(m.r.state, HTTP1_READER_FAILED);
  CHECK_EQ_INT(m.r.error_status, 502);
  CHECK_EQ_INT(m.heads, 0);
  http1_reader_free(&m.r);
}

static void test_bad_responses(void) {
  expect_bad_response("SSH-2.0-OpenSSH\r\n");
  expect_bad_response("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
  expect_bad_response("HTTP/1.1 200 OK\r\nX: a\001b\r\n\r\n");
  expect_bad_response("HTTP/1.1 700 Odd\r\n\r\n");
  expect_bad_response("HTTP/2.0 200 OK\r\n\r\n");
  expect_bad_response("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n");
}

static void test_error_response_format(void) {
  char out[256];
  size_t n = http1_error_response(502, out, sizeof out);
  CHECK_EQ_INT(n, strlen(out));
  CHECK_STR(out, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
                 "Connection: close\r\n\r\n502 Bad Gateway\n");
}

TEST_MAIN({
  RUN(test_request_rewritten_for_the_backend);
  RUN(test_chunked_request_reframed_and_trailers_filtered);
  RUN(test_pipelined_requests_wait_their_turn);
  RUN(test_byte_by_byte_same_output);
  RUN(test_smuggling_vectors_refused);
  RUN(test_hosts_accepted);
  RUN(test_absolute_form_and_http10);
  RUN(test_upgrades);
  RUN(test_header_limit);
  RUN(test_responses);
  RUN(test_bodiless_responses);
  RUN(test_101);
  RUN(test_bad_responses);
  RUN(test_error_response_format);
})
