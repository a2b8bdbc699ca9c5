/* The HTTP/1.1 exchange logic: rewriting, framing, pipelining, upgrades, errors, smuggling. */
#include "stapler/http1.h"
#include "testing.h"

struct capture {
  char backend[65536], client[65536];
  size_t blen, clen;
};

static void cap_backend(void *ctx, const uint8_t *d, size_t n) {
  struct capture *c = ctx;
  if (c->blen + n < sizeof c->backend) memcpy(c->backend + c->blen, d, n), c->blen += n;
  c->backend[c->blen] = 0;
}
static void cap_client(void *ctx, const uint8_t *d, size_t n) {
  struct capture *c = ctx;
  if (c->clen + n < sizeof c->client) memcpy(c->client + c->clen, d, n), c->clen += n;
  c->client[c->clen] = 0;
}

static struct capture cap;
static struct http1 h;

static void setup(bool forwarded, uint32_t max_header) {
  memset(&cap, 0, sizeof cap);
  struct http1_params p = {.max_header_bytes = max_header, .forwarded_headers = forwarded,
                           .server_port = 443};
  strcpy(p.client_ip, "192.0.2.7");
  struct http1_sink s = {cap_backend, cap_client, &cap};
  http1_init(&h, &p, &s);
}

static size_t feed_client(const char *s) {
  return http1_client_data(&h, (const uint8_t *)s, strlen(s));
}
static void feed_backend(const char *s) { http1_backend_data(&h, (const uint8_t *)s, strlen(s)); }

static void test_simple_get_rewrites_headers(void) {
  setup(true, 32768);
  const char *req = "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 6.6.6.6\r\n"
                    "x-forwarded-proto: http\r\nForwarded: for=6.6.6.6\r\nAccept:  */*  \r\n\r\n";
  CHECK_EQ_INT(feed_client(req), strlen(req));
  CHECK_STR(cap.backend, "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
                         "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n"
                         "X-Forwarded-Port: 443\r\n\r\n");
  CHECK(h.awaiting_response);
  CHECK(!http1_idle(&h));
  feed_backend("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
  CHECK_STR(cap.client, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
  CHECK(!h.awaiting_response);
  CHECK(http1_idle(&h));
  CHECK(!h.close_after_response);
  CHECK_EQ_INT(h.last_status, 200);
  http1_free(&h);
}

static void test_forwarded_headers_off(void) {
  setup(false, 32768);
  const char *req = "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n";
  feed_client(req);
  CHECK_STR(cap.backend, req);
  http1_free(&h);
}

static void test_chunked_request_reframed(void) {
  setup(true, 32768);
  const char *req = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5;ext=\"v\"\r\nhello\r\n000A\r\n0123456789\r\n0\r\nTrailer-A: b\r\n"
                    "Content-Length: 9\r\n\r\n";
  CHECK_EQ_INT(feed_client(req), strlen(req));
  CHECK_CONTAINS(cap.backend, "Transfer-Encoding: chunked\r\nX-Forwarded-For");
  CHECK_CONTAINS(cap.backend, "\r\n\r\n5\r\nhello\r\na\r\n0123456789\r\n0\r\nTrailer-A: b\r\n\r\n");
  CHECK(strstr(cap.backend, "Content-Length") == NULL);
  http1_free(&h);
}

static void test_chunked_response_and_trailers(void) {
  setup(true, 32768);
  feed_client("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  feed_backend("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
  CHECK(h.awaiting_response);
  feed_backend("0\r\nX-Sum: 1\r\n\r\n");
  CHECK_STR(cap.client, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
                        "0\r\nX-Sum: 1\r\n\r\n");
  CHECK(!h.awaiting_response);
  http1_free(&h);
}

static void test_pipelining_one_at_a_time(void) {
  setup(true, 32768);
  const char *r1 = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n";
  const char *both = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n";
  size_t used = feed_client(both);
  CHECK_EQ_INT(used, strlen(r1));
  CHECK(strstr(cap.backend, "/2") == NULL);
  feed_backend("HTTP/1.1 204 No Content\r\n\r\n");
  CHECK_EQ_INT(http1_client_data(&h, (const uint8_t *)both + used, strlen(both) - used),
               strlen(both) - used);
  CHECK_CONTAINS(cap.backend, "GET /2 HTTP/1.1");
  feed_backend("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  CHECK_EQ_INT(h.requests, 2);
  CHECK_EQ_INT(h.responses, 2);
  CHECK(http1_idle(&h));
  http1_free(&h);
}

static void test_byte_by_byte_same_output(void) {
  const char *req = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "4\r\nwiki\r\n0\r\n\r\n";
  const char *res = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
  setup(true, 32768);
  feed_client(req);
  feed_backend(res);
  char backend_whole[4096], client_whole[4096];
  strcpy(backend_whole, cap.backend);
  strcpy(client_whole, cap.client);
  http1_free(&h);
  setup(true, 32768);
  for (size_t i = 0; req[i]; i++) CHECK_EQ_INT(http1_client_data(&h, (const uint8_t *)req + i, 1), 1);
  for (size_t i = 0; res[i]; i++) http1_backend_data(&h, (const uint8_t *)res + i, 1);
  CHECK_STR(cap.backend, backend_whole);
  CHECK_STR(cap.client, client_whole);
  http1_free(&h);
}

/* Requests that could be read two ways by two parsers are refused, never forwarded. */
static void expect_rejected(const char *req, int status) {
  setup(true, 32768);
  feed_client(req);
  if (h.error_status != status) fprintf(stderr, "  request: %s\n", req);
  CHECK_EQ_INT(h.error_status, status);
  if (strstr(cap.backend, "\r\n\r\n")) fprintf(stderr, "  forwarded: %s\n", req);
  CHECK(strstr(cap.backend, "\r\n\r\n") == NULL); /* no complete header block went out */
  http1_free(&h);
}

static void test_smuggling_vectors_rejected(void) {
  expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: "
                  "chunked\r\n\r\n0\r\n\r\n", 400);
  expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: "
                  "3\r\n\r\n0\r\n\r\n", 400);
  expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                  400);
  expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                  400);
  expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n", 400);
  expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", 400);
  expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                  400);
  expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400);
  expect_rejected("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", 400);
  expect_rejected("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400);
  expect_rejected("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
  expect_rejected("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400);
  expect_rejected("GET / HTTP/1.1\r\nHost: x\r\nX: a\001b\r\n\r\n", 400);
  expect_rejected("GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400);
  expect_rejected("GET / HTTP/1.1\r\nHost: x\r\nX\x7f: a\r\n\r\n", 400);
  expect_rejected("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400);
  expect_rejected("GET / HTTP/1.2\r\nHost: x\r\n\r\n", 400);
  expect_rejected("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400);
  expect_rejected("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405);
  expect_rejected("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400);
}

static void test_chunk_framing_errors_stop_forwarding(void) {
  setup(true, 32768);
  feed_client("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n");
  CHECK_EQ_INT(h.error_status, 400);
  CHECK(strstr(cap.backend, "hello") == NULL);
  http1_free(&h);
}

static void test_header_limit(void) {
  setup(true, 1024);
  char req[4096];
  int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
  memset(req + n, 'a', 1100);
  strcpy(req + n + 1100, "\r\n\r\n");
  feed_client(req);
  CHECK_EQ_INT(h.error_status, 431);
  CHECK_EQ_INT(cap.blen, 0);
  http1_free(&h);
  setup(true, 1024);
  feed_client("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  char res[4096];
  n = snprintf(res, sizeof res, "HTTP/1.1 200 OK\r\nX-Big: ");
  memset(res + n, 'a', 1100);
  strcpy(res + n + 1100, "\r\n\r\n");
  feed_backend(res);
  CHECK_EQ_INT(h.error_status, 502);
  CHECK_EQ_INT(cap.clen, 0);
  http1_free(&h);
}

static void test_head_and_informational(void) {
  setup(true, 32768);
  feed_client("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
  feed_backend("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
  CHECK(!h.awaiting_response);
  http1_free(&h);
  setup(true, 32768);
  feed_client("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  feed_backend("HTTP/1.1 100 Continue\r\n\r\n");
  CHECK(h.awaiting_response);
  CHECK(!h.response_started); /* a 502 may still be sent after a 100 */
  feed_client("ok");
  feed_backend("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
  CHECK(!h.awaiting_response);
  CHECK_STR(cap.client, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
  CHECK_CONTAINS(cap.backend, "\r\n\r\nok");
  http1_free(&h);
}

static void test_connection_close(void) {
  setup(true, 32768);
  feed_client("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n");
  feed_backend("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  CHECK(h.close_after_response);
  CHECK_EQ_INT(feed_client("GET /3 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  http1_free(&h);
  setup(true, 32768);
  feed_client("GET / HTTP/1.0\r\n\r\n");
  feed_backend("HTTP/1.0 200 OK\r\n\r\nbody until close");
  CHECK(h.awaiting_response);
  http1_backend_eof(&h);
  CHECK(!h.awaiting_response);
  CHECK(h.close_after_response);
  CHECK_EQ_INT(h.error_status, 0);
  CHECK_CONTAINS(cap.client, "body until close");
  http1_free(&h);
}

static void test_upgrade(void) {
  setup(true, 32768);
  const char *req = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                    "\r\n";
  char both[512];
  snprintf(both, sizeof both, "%sEARLY", req);
  CHECK_EQ_INT(feed_client(both), strlen(req));
  feed_backend("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               "\r\nFRAME");
  CHECK(h.upgraded);
  CHECK_CONTAINS(cap.client, "101 Switching Protocols");
  CHECK_CONTAINS(cap.client, "\r\n\r\nFRAME");
  feed_backend("MORE");
  CHECK_CONTAINS(cap.client, "FRAMEMORE");
  CHECK_EQ_INT(feed_client("EARLY"), 0); /* the connection forwards tunnel bytes itself */
  http1_free(&h);
}

static void test_upgrade_refused_continues_http(void) {
  setup(true, 32768);
  feed_client("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  feed_backend("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
  CHECK(!h.upgraded);
  const char *next = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK_EQ_INT(feed_client(next), strlen(next));
  CHECK_CONTAINS(cap.backend, "GET /next");
  http1_free(&h);
}

static void test_backend_failures(void) {
  setup(true, 32768);
  feed_client("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  http1_backend_eof(&h);
  CHECK_EQ_INT(h.error_status, 502);
  http1_free(&h);
  setup(true, 32768);
  feed_client("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  feed_backend("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  http1_backend_eof(&h);
  CHECK_EQ_INT(h.error_status, 0);
  CHECK(h.backend_broken);
  http1_free(&h);
  setup(true, 32768);
  feed_client("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  feed_backend("SSH-2.0-OpenSSH\r\n");
  CHECK_EQ_INT(h.error_status, 502);
  CHECK_EQ_INT(cap.clen, 0);
  http1_free(&h);
  setup(true, 32768);
  feed_backend("HTTP/1.1 408 Request Timeout\r\n\r\n"); /* nothing was asked */
  CHECK(h.backend_broken);
  http1_free(&h);
  setup(true, 32768);
  feed_client("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  feed_backend("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n");
  CHECK_EQ_INT(h.error_status, 502);
  http1_free(&h);
  /* An idle backend closing between requests is normal. */
  setup(true, 32768);
  feed_client("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  feed_backend("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  http1_backend_eof(&h);
  CHECK_EQ_INT(h.error_status, 0);
  CHECK(!h.backend_broken);
  http1_free(&h);
}

static void test_error_response_format(void) {
  char out[256];
  size_t n = http1_error_response(502, out, sizeof out);
  CHECK_EQ_INT(n, strlen(out));
  CHECK_STR(out, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
                 "Connection: close\r\n\r\n502 Bad Gateway\n");
}

TEST_MAIN({
  RUN(test_simple_get_rewrites_headers);
  RUN(test_forwarded_headers_off);
  RUN(test_chunked_request_reframed);
  RUN(test_chunked_response_and_trailers);
  RUN(test_pipelining_one_at_a_time);
  RUN(test_byte_by_byte_same_output);
  RUN(test_smuggling_vectors_rejected);
  RUN(test_chunk_framing_errors_stop_forwarding);
  RUN(test_header_limit);
  RUN(test_head_and_informational);
  RUN(test_connection_close);
  RUN(test_upgrade);
  RUN(test_upgrade_refused_continues_http);
  RUN(test_backend_failures);
  RUN(test_error_response_format);
})
