/* Differential: fuzzer-chosen client bytes and backend bytes (split at the first 0xff) go
 * through the same reader and writers the proxy uses, in small pieces; what would reach the
 * backend and the client is then parsed again by a fresh strict llhttp parser, and the
 * forwarding invariant is checked:
 * - the backend receives exactly the requests stapler accepted (same method, same target, the
 *   same body bytes), each with exactly one X-Forwarded-For, stapler's;
 * - the client receives exactly one final response per response stapler read, well framed.
 * Any difference aborts (a finding); a crash or sanitizer report is one too. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stapler/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSGS 64
#define OUT_CAP (1 << 20)

static char *kUpgrades[] = {"websocket"};
static const char kForwarding[] =
    "X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n";

struct msg {
  char method[32], target[256];
  size_t body_len;
  uint64_t body_sum;
  bool head;  /* request method was HEAD */
  int status; /* responses */
  int xff_count;
  bool xff_ours;
};

struct side {
  struct http1_reader r;
  uint8_t *out;
  size_t out_len;
  struct msg msgs[MAX_MSGS];
  int count;  /* heads read (final heads for responses) */
  enum http_framing framing;
  bool response, stop;
  const struct msg *requests; /* responses: the requests they answer */
  int request_count;
};

static void fail(const char *what) {
  fprintf(stderr, "forwarding invariant broken: %s\n", what);
  abort();
}

static void emit(void *ctx, const uint8_t *d, size_t n) {
  struct side *s = ctx;
  if (s->out_len + n > OUT_CAP) {
    s->stop = true;
    return;
  }
  memcpy(s->out + s->out_len, d, n);
  s->out_len += n;
}

static void copy_str(char *dst, size_t cap, const char *src, size_t n) {
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = 0;
}

static void on_head(void *ctx) {
  struct side *s = ctx;
  struct http1_writer w = {.emit = emit, .ctx = s};
  const struct http_head *h = &s->r.head;
  if (s->response) {
    if (h->status < 200) { /* interim: relayed, not counted */
      http1_write_response(&w, h, HTTP_FRAMING_NONE, false);
      return;
    }
    bool close;
    s->framing = http1_client_framing(h, 1, &close);
    http1_write_response(&w, h, s->framing, close);
    if (s->count < MAX_MSGS) s->msgs[s->count].status = h->status;
  } else {
    s->framing = h->framing;
    http1_write_request(&w, h, h->version_minor, kForwarding, sizeof kForwarding - 1);
    if (s->count < MAX_MSGS) {
      struct msg *m = &s->msgs[s->count];
      copy_str(m->method, sizeof m->method, h->text + h->method_off, h->method_len);
      copy_str(m->target, sizeof m->target, http_head_target(h), h->target_len);
      m->head = http_head_method_is(h, "HEAD");
    }
  }
  s->count++;
}

static void on_body(void *ctx, const uint8_t *d, size_t n) {
  struct side *s = ctx;
  struct http1_writer w = {.emit = emit, .ctx = s};
  http1_write_body(&w, s->framing, d, n);
  if (s->count >= 1 && s->count <= MAX_MSGS) {
    struct msg *m = &s->msgs[s->count - 1];
    m->body_len += n;
    for (size_t i = 0; i < n; i++) m->body_sum = m->body_sum * 31 + d[i];
  }
}

static void on_end(void *ctx) {
  struct side *s = ctx;
  struct http1_writer w = {.emit = emit, .ctx = s};
  if (s->response && s->r.head.status < 200) return;
  http1_write_end(&w, s->framing, &s->r.head, s->r.in_trailers ? s->r.trailer_from : 0);
}

static const struct http1_reader_events kEvents = {on_head, on_body, on_end};

/* Feeds `len` bytes in pieces of varying size, as reads would deliver them. */
static void drive(struct side *s, const uint8_t *p, size_t len) {
  size_t i = 0, step = 1;
  while (i < len && !s->stop && s->count < MAX_MSGS) {
    size_t n = step < len - i ? step : len - i;
    step = step % 13 + 1;
    size_t used = http1_reader_feed(&s->r, p + i, n);
    i += used;
    if (s->r.state == HTTP1_READER_FAILED) return;
    if (s->r.state == HTTP1_READER_DONE) {
      const struct http_head *h = &s->r.head;
      /* After an upgrade or a 101, what follows is not HTTP: stop like the proxy does. */
      if ((!s->response && h->upgrade_len) || (s->response && h->status == 101)) return;
      if (s->response && h->status >= 200 && s->count >= s->request_count) return;
      if (s->response && h->status >= 200 && s->count < s->request_count)
        s->r.response_to_head = s->requests[s->count].head;
      http1_reader_next(&s->r);
    }
  }
  if (s->response) http1_reader_eof(&s->r); /* the backend closes: ends a close-delimited body */
}

/* ---- the judge: a fresh strict llhttp over what stapler wrote ------------------------------*/

struct judge {
  llhttp_t p;
  struct msg msgs[MAX_MSGS];
  int count, complete;
  const struct msg *requests; /* for responses */
  char field[64];
  size_t field_len;
  bool in_value; /* the last span was a value */
  char value[64];
  size_t value_len;
};

static int j_begin(llhttp_t *p) {
  struct judge *j = p->data;
  if (j->count < MAX_MSGS) memset(&j->msgs[j->count], 0, sizeof j->msgs[0]);
  return 0;
}
static int j_url(llhttp_t *p, const char *at, size_t n) {
  struct judge *j = p->data;
  if (j->count < MAX_MSGS) {
    struct msg *m = &j->msgs[j->count];
    size_t have = strlen(m->target);
    copy_str(m->target + have, sizeof m->target - have, at, n);
  }
  return 0;
}
static void end_field(struct judge *j) {
  if (j->count < MAX_MSGS && j->field_len == 15 && !strncasecmp(j->field, "x-forwarded-for", 15)) {
    struct msg *m = &j->msgs[j->count];
    m->xff_count++;
    m->xff_ours = j->value_len == 9 && !memcmp(j->value, "192.0.2.1", 9);
  }
  j->field_len = j->value_len = 0;
  j->in_value = false;
}
static int j_field(llhttp_t *p, const char *at, size_t n) {
  struct judge *j = p->data;
  if (j->in_value) end_field(j);
  if (j->field_len + n < sizeof j->field) memcpy(j->field + j->field_len, at, n);
  j->field_len += n;
  return 0;
}
static int j_value(llhttp_t *p, const char *at, size_t n) {
  struct judge *j = p->data;
  if (j->value_len + n < sizeof j->value) memcpy(j->value + j->value_len, at, n);
  j->value_len += n;
  j->in_value = true;
  return 0;
}
static int j_headers(llhttp_t *p) {
  struct judge *j = p->data;
  end_field(j);
  if (j->count < MAX_MSGS) {
    struct msg *m = &j->msgs[j->count];
    if (p->type == HTTP_REQUEST) {
      copy_str(m->method, sizeof m->method, llhttp_method_name(llhttp_get_method(p)), 32);
    } else {
      m->status = llhttp_get_status_code(p);
    }
  }
  bool interim = p->type == HTTP_RESPONSE && p->status_code < 200;
  if (!interim) j->count++;
  if (p->type == HTTP_RESPONSE) {
    int idx = j->count - 1;
    if (interim || p->status_code == 204 || p->status_code == 304 ||
        (idx >= 0 && idx < MAX_MSGS && j->requests && j->requests[idx].head))
      return 1;
  }
  return 0;
}
static int j_body(llhttp_t *p, const char *at, size_t n) {
  struct judge *j = p->data;
  if (j->count >= 1 && j->count <= MAX_MSGS) {
    struct msg *m = &j->msgs[j->count - 1];
    m->body_len += n;
    for (size_t i = 0; i < n; i++) m->body_sum = m->body_sum * 31 + (uint8_t)at[i];
  }
  return 0;
}
static int j_complete(llhttp_t *p) {
  struct judge *j = p->data;
  if (!(p->type == HTTP_RESPONSE && p->status_code < 200)) j->complete++;
  return 0;
}

static const llhttp_settings_t kJudge = {
    .on_message_begin = j_begin,
    .on_url = j_url,
    .on_header_field = j_field,
    .on_header_value = j_value,
    .on_headers_complete = j_headers,
    .on_body = j_body,
    .on_message_complete = j_complete,
};

static void judge_run(struct judge *j, llhttp_type_t type, const uint8_t *p, size_t n,
                      const struct msg *requests) {
  memset(j, 0, sizeof *j);
  j->requests = requests;
  llhttp_init(&j->p, type, &kJudge);
  j->p.data = j;
  llhttp_errno_t err = llhttp_execute(&j->p, (const char *)p, n);
  if (err != HPE_OK && err != HPE_PAUSED_UPGRADE) fail(llhttp_get_error_reason(&j->p));
}

static void compare(const struct side *s, const struct judge *j, bool requests) {
  int n = s->count < MAX_MSGS ? s->count : MAX_MSGS;
  if (j->count != s->count) fail(requests ? "request count differs" : "response count differs");
  for (int i = 0; i < n; i++) {
    const struct msg *a = &s->msgs[i], *b = &j->msgs[i];
    if (requests) {
      if (strcmp(a->method, b->method) || strcmp(a->target, b->target)) fail("request differs");
      if (b->xff_count != 1 || !b->xff_ours) fail("X-Forwarded-For is not exactly stapler's");
    } else if (a->status != b->status) {
      fail("response status differs");
    }
    if (a->body_len != b->body_len || a->body_sum != b->body_sum) fail("body differs");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *split = memchr(data, 0xff, size);
  size_t client_len = split ? (size_t)(split - data) : size;
  const uint8_t *backend = split ? split + 1 : data + size;
  size_t backend_len = size - client_len - (split ? 1 : 0);

  static struct side req, res;
  static struct judge j;
  static uint8_t req_out[OUT_CAP], res_out[OUT_CAP];

  memset(&req, 0, sizeof req);
  req.out = req_out;
  http1_reader_init(&req.r, HTTP_REQUEST, &kEvents, &req, 4096);
  req.r.upgrades = kUpgrades;
  req.r.upgrade_count = 1;
  drive(&req, data, client_len);
  bool req_ended = req.r.state == HTTP1_READER_IDLE || req.r.state == HTTP1_READER_DONE;
  judge_run(&j, HTTP_REQUEST, req.out, req.out_len, NULL);
  if (!req.stop) {
    compare(&req, &j, true);
    if (req_ended && j.complete != j.count) fail("a forwarded request does not end");
  }

  memset(&res, 0, sizeof res);
  res.out = res_out;
  res.response = true;
  res.requests = req.msgs;
  res.request_count = req.count < MAX_MSGS ? req.count : MAX_MSGS;
  http1_reader_init(&res.r, HTTP_RESPONSE, &kEvents, &res, 4096);
  if (res.request_count > 0) {
    res.r.response_to_head = req.msgs[0].head;
    drive(&res, backend, backend_len);
    judge_run(&j, HTTP_RESPONSE, res.out, res.out_len, req.msgs);
    if (!res.stop) compare(&res, &j, false);
  }
  http1_reader_free(&req.r);
  http1_reader_free(&res.r);
  return 0;
}
