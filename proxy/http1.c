#include "stapler/http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stapler/util.h"

enum span { SPAN_NONE, SPAN_TARGET, SPAN_FIELD, SPAN_VALUE };

/* ---- accumulating a header block ------------------------------------------------------------*/

static void head_reset(struct http1_head *hd) {
  hd->len = 0;
  hd->field_count = 0;
  hd->target_off = hd->target_len = 0;
  hd->bytes = 0;
  hd->last = SPAN_NONE;
  hd->in_trailers = false;
}

static void head_free(struct http1_head *hd) {
  free(hd->text);
  free(hd->fields);
  memset(hd, 0, sizeof *hd);
}

/* Appends a span of the given kind; a span of a new kind starts a new token. Fails when the
 * block grows past `limit` bytes. */
static bool head_append(struct http1_head *hd, enum span kind, const char *at, size_t len,
                        size_t limit) {
  hd->bytes += len + ((int)kind != hd->last ? 2 : 0); /* ": " or CRLF around each token */
  if (hd->bytes > limit) return false;
  if (hd->len + len > hd->cap) {
    hd->cap = MAX(hd->cap * 2, MAX(hd->len + len, (size_t)1024));
    hd->text = xrealloc(hd->text, hd->cap);
  }
  if ((int)kind != hd->last) {
    if (kind == SPAN_FIELD) {
      if (hd->field_count == hd->field_cap) {
        hd->field_cap = hd->field_cap ? hd->field_cap * 2 : 16;
        hd->fields = xrealloc(hd->fields, hd->field_cap * sizeof *hd->fields);
      }
      hd->fields[hd->field_count++] = (struct http1_field){(uint32_t)hd->len, 0, 0, 0};
    } else if (kind == SPAN_VALUE && hd->field_count > 0) {
      hd->fields[hd->field_count - 1].value_off = (uint32_t)hd->len;
    } else if (kind == SPAN_TARGET) {
      hd->target_off = (uint32_t)hd->len;
    }
    hd->last = kind;
  }
  memcpy(hd->text + hd->len, at, len);
  hd->len += len;
  if (kind == SPAN_FIELD) hd->fields[hd->field_count - 1].name_len += (uint32_t)len;
  if (kind == SPAN_VALUE && hd->field_count > 0)
    hd->fields[hd->field_count - 1].value_len += (uint32_t)len;
  if (kind == SPAN_TARGET) hd->target_len += (uint32_t)len;
  return true;
}

static bool field_is(const struct http1_head *hd, const struct http1_field *f, const char *name) {
  return f->name_len == strlen(name) && !strncasecmp(hd->text + f->name_off, name, f->name_len);
}

/* RFC 9110 5.6.2 token characters: anything else in a field name (such as the space in
 * "Host : x", which llhttp lets through) is refused. */
static bool is_token_char(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
  case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
  case '-': case '.': case '^': case '_': case '`': case '|': case '~':
    return true;
  default:
    return false;
  }
}

static bool is_token(const char *s, size_t n) {
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++)
    if (!is_token_char((unsigned char)s[i])) return false;
  return true;
}

static bool fields_valid(const struct http1_head *hd, size_t from) {
  for (size_t i = from; i < hd->field_count; i++)
    if (!is_token(hd->text + hd->fields[i].name_off, hd->fields[i].name_len)) return false;
  return true;
}

/* ---- writing to a sink in few calls --------------------------------------------------------*/

struct writer {
  char buf[4096];
  size_t len;
  void (*emit)(void *ctx, const uint8_t *data, size_t len);
  void *ctx;
};

static void writer_flush(struct writer *w) {
  if (w->len) w->emit(w->ctx, (const uint8_t *)w->buf, w->len);
  w->len = 0;
}

static void writer_put(struct writer *w, const char *s, size_t n) {
  if (w->len + n > sizeof w->buf) writer_flush(w);
  if (n > sizeof w->buf) {
    w->emit(w->ctx, (const uint8_t *)s, n);
    return;
  }
  memcpy(w->buf + w->len, s, n);
  w->len += n;
}

static void writer_str(struct writer *w, const char *s) { writer_put(w, s, strlen(s)); }

/* "HTTP/1.1": llhttp only accepts single-digit versions. */
static void writer_version(struct writer *w, llhttp_t *p) {
  char v[8] = {'H', 'T', 'T', 'P', '/', (char)('0' + llhttp_get_http_major(p) % 10), '.',
               (char)('0' + llhttp_get_http_minor(p) % 10)};
  writer_put(w, v, sizeof v);
}

/* Writes "Name: value\r\n", trimming the value's trailing whitespace. */
static void writer_field(struct writer *w, const struct http1_head *hd,
                         const struct http1_field *f) {
  size_t vlen = f->value_len;
  const char *v = hd->text + f->value_off;
  while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) vlen--;
  writer_put(w, hd->text + f->name_off, f->name_len);
  writer_put(w, ": ", 2);
  writer_put(w, v, vlen);
  writer_put(w, "\r\n", 2);
}

static bool is_forwarding_field(const struct http1_head *hd, const struct http1_field *f) {
  return field_is(hd, f, "x-forwarded-for") || field_is(hd, f, "x-forwarded-proto") ||
         field_is(hd, f, "x-forwarded-port") || field_is(hd, f, "x-forwarded-host") ||
         field_is(hd, f, "forwarded");
}

/* Last chunk's trailer fields (minus framing ones) and the final CRLF. */
static void emit_trailers(struct writer *w, const struct http1_head *hd, size_t from) {
  for (size_t i = from; i < hd->field_count; i++) {
    const struct http1_field *f = &hd->fields[i];
    if (field_is(hd, f, "content-length") || field_is(hd, f, "transfer-encoding")) continue;
    writer_field(w, hd, f);
  }
  writer_put(w, "\r\n", 2);
  writer_flush(w);
}

/* ---- requests -------------------------------------------------------------------------------*/

static struct http1 *of(llhttp_t *p) { return p->data; }

/* ---- what both directions share: the header block and chunked re-framing -------------------*/

static int fail_request(struct http1 *h, llhttp_t *p, int status, const char *reason);
static int fail_response(struct http1 *h, llhttp_t *p, const char *reason);

static bool is_request(const struct http1 *h, const llhttp_t *p) { return p == &h->req; }

static struct http1_head *head_of(struct http1 *h, llhttp_t *p) {
  return is_request(h, p) ? &h->req_head : &h->res_head;
}

/* Where the message `p` parses is re-serialised to. */
static void emit(struct http1 *h, llhttp_t *p, const uint8_t *data, size_t len) {
  (is_request(h, p) ? h->sink.to_backend : h->sink.to_client)(h->sink.ctx, data, len);
}

static int on_span(llhttp_t *p, enum span kind, const char *at, size_t len) {
  struct http1 *h = of(p);
  if (head_append(head_of(h, p), kind, at, len, h->params.max_header_bytes)) return 0;
  return is_request(h, p) ? fail_request(h, p, 431, "request headers too large")
                          : fail_response(h, p, "response headers too large");
}
/* The request-target of a request, the reason phrase of a response. */
static int on_target(llhttp_t *p, const char *at, size_t len) {
  return on_span(p, SPAN_TARGET, at, len);
}
static int on_field(llhttp_t *p, const char *at, size_t len) {
  return on_span(p, SPAN_FIELD, at, len);
}
static int on_value(llhttp_t *p, const char *at, size_t len) {
  return on_span(p, SPAN_VALUE, at, len);
}

static int on_chunk_header(llhttp_t *p) {
  struct http1 *h = of(p);
  struct http1_head *hd = head_of(h, p);
  if (p->content_length == 0) { /* last chunk: trailers may follow */
    hd->in_trailers = true;
    hd->last = SPAN_NONE;
    hd->trailer_from = hd->field_count;
  }
  char line[32];
  int n = snprintf(line, sizeof line, "%llx\r\n", (unsigned long long)p->content_length);
  emit(h, p, (const uint8_t *)line, (size_t)n);
  return 0;
}

static int on_chunk_complete(llhttp_t *p) {
  struct http1 *h = of(p);
  if (!head_of(h, p)->in_trailers) emit(h, p, (const uint8_t *)"\r\n", 2);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  emit(of(p), p, (const uint8_t *)at, len);
  return 0;
}

static int fail_request(struct http1 *h, llhttp_t *p, int status, const char *reason) {
  h->error_status = status;
  h->error_reason = reason;
  llhttp_set_error_reason(p, reason);
  return HPE_USER;
}

static int req_on_message_begin(llhttp_t *p) {
  struct http1 *h = of(p);
  head_reset(&h->req_head);
  h->req_state = HTTP1_REQ_HEADERS;
  h->begun++;
  return 0;
}

static const char *check_request(struct http1 *h, llhttp_t *p, int *status) {
  const struct http1_head *hd = &h->req_head;
  *status = 400;
  if (llhttp_get_method(p) == HTTP_CONNECT) {
    *status = 405;
    return "CONNECT is not supported";
  }
  if (!fields_valid(hd, 0)) return "invalid header field name";
  /* llhttp refuses this only after on_headers_complete; refuse it before forwarding. */
  if ((p->flags & F_TRANSFER_ENCODING) && !(p->flags & F_CHUNKED))
    return "Transfer-Encoding without chunked as the final coding";
  int hosts = 0;
  for (size_t i = 0; i < hd->field_count; i++) hosts += field_is(hd, &hd->fields[i], "host");
  if (hosts > 1) return "more than one Host header";
  if (hosts == 0 && llhttp_get_http_minor(p) >= 1) return "HTTP/1.1 request without Host";
  return NULL;
}

static void write_request_head(struct http1 *h, llhttp_t *p) {
  const struct http1_head *hd = &h->req_head;
  struct writer w = {.len = 0, .emit = h->sink.to_backend, .ctx = h->sink.ctx};
  writer_str(&w, llhttp_method_name((llhttp_method_t)llhttp_get_method(p)));
  writer_put(&w, " ", 1);
  writer_put(&w, hd->text + hd->target_off, hd->target_len);
  writer_put(&w, " ", 1);
  writer_version(&w, p);
  writer_put(&w, "\r\n", 2);
  for (size_t i = 0; i < hd->field_count; i++) {
    if (h->params.forwarded_headers && is_forwarding_field(hd, &hd->fields[i])) continue;
    writer_field(&w, hd, &hd->fields[i]);
  }
  writer_put(&w, h->forwarding, h->forwarding_len); /* built once per connection */
  writer_put(&w, "\r\n", 2);
  writer_flush(&w);
}

static int req_on_headers_complete(llhttp_t *p) {
  struct http1 *h = of(p);
  int status;
  const char *problem = check_request(h, p, &status);
  if (problem) return fail_request(h, p, status, problem);
  h->req_chunked = (p->flags & F_CHUNKED) != 0;
  h->req_is_head = llhttp_get_method(p) == HTTP_HEAD;
  h->req_is_upgrade = p->upgrade;
  if (!llhttp_should_keep_alive(p)) h->close_after_response = true;
  write_request_head(h, p);
  h->req_state = HTTP1_REQ_BODY;
  h->awaiting_response = true;
  h->response_started = false;
  h->requests++;
  return 0;
}

static int req_on_message_complete(llhttp_t *p) {
  struct http1 *h = of(p);
  if (h->req_chunked) {
    if (!fields_valid(&h->req_head, h->req_head.trailer_from))
      return fail_request(h, p, 400, "invalid trailer field name");
    struct writer w = {.len = 0, .emit = h->sink.to_backend, .ctx = h->sink.ctx};
    emit_trailers(&w, &h->req_head, h->req_head.trailer_from);
  }
  h->req_state = HTTP1_REQ_WAIT;
  /* An upgrade request makes llhttp stop by itself (HPE_PAUSED_UPGRADE). */
  return h->req_is_upgrade ? 0 : HPE_PAUSED;
}

static const llhttp_settings_t kRequestSettings = {
    .on_message_begin = req_on_message_begin,
    .on_url = on_target,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = req_on_headers_complete,
    .on_body = on_body,
    .on_chunk_header = on_chunk_header,
    .on_chunk_complete = on_chunk_complete,
    .on_message_complete = req_on_message_complete,
};

/* ---- responses ------------------------------------------------------------------------------*/

static int fail_response(struct http1 *h, llhttp_t *p, const char *reason) {
  h->error_reason = reason;
  llhttp_set_error_reason(p, reason);
  return HPE_USER;
}

static int res_on_message_begin(llhttp_t *p) {
  struct http1 *h = of(p);
  head_reset(&h->res_head);
  h->res_reading = true;
  return 0;
}

static void write_response_head(struct http1 *h, llhttp_t *p) {
  const struct http1_head *hd = &h->res_head;
  struct writer w = {.len = 0, .emit = h->sink.to_client, .ctx = h->sink.ctx};
  int status = llhttp_get_status_code(p); /* llhttp allows 100..999 */
  char code[5] = {' ', (char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                  (char)('0' + status % 10), ' '};
  writer_version(&w, p);
  writer_put(&w, code, sizeof code);
  writer_put(&w, hd->text + hd->target_off, hd->target_len);
  writer_put(&w, "\r\n", 2);
  for (size_t i = 0; i < hd->field_count; i++) writer_field(&w, hd, &hd->fields[i]);
  writer_put(&w, "\r\n", 2);
  writer_flush(&w);
}

static int res_on_headers_complete(llhttp_t *p) {
  struct http1 *h = of(p);
  int status = llhttp_get_status_code(p);
  if (!fields_valid(&h->res_head, 0)) return fail_response(h, p, "invalid header field name");
  if (status == 101 && !h->req_is_upgrade)
    return fail_response(h, p, "101 Switching Protocols without an upgrade request");
  write_response_head(h, p);
  if (status >= 200 || status == 101) h->response_started = true;
  h->res_chunked = (p->flags & F_CHUNKED) != 0;
  return h->req_is_head && status >= 200 ? 1 : 0; /* 1: this response has no body */
}

static int res_on_message_complete(llhttp_t *p) {
  struct http1 *h = of(p);
  int status = llhttp_get_status_code(p);
  if (h->res_chunked) {
    struct writer w = {.len = 0, .emit = h->sink.to_client, .ctx = h->sink.ctx};
    emit_trailers(&w, &h->res_head, h->res_head.trailer_from);
  }
  h->res_reading = false;
  if (status < 200 && status != 101) return 0; /* informational: the final response follows */
  h->awaiting_response = false;
  h->responses++;
  h->last_status = status;
  if (status == 101)
    h->upgraded = true;
  else if (!llhttp_should_keep_alive(p))
    h->close_after_response = true;
  return HPE_PAUSED;
}

static const llhttp_settings_t kResponseSettings = {
    .on_message_begin = res_on_message_begin,
    .on_status = on_target,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = res_on_headers_complete,
    .on_body = on_body,
    .on_chunk_header = on_chunk_header,
    .on_chunk_complete = on_chunk_complete,
    .on_message_complete = res_on_message_complete,
};

/* ---- driving both parsers --------------------------------------------------------------------*/

void http1_init(struct http1 *h, const struct http1_params *params,
                const struct http1_sink *sink) {
  memset(h, 0, sizeof *h);
  h->params = *params;
  h->sink = *sink;
  llhttp_init(&h->req, HTTP_REQUEST, &kRequestSettings);
  llhttp_init(&h->res, HTTP_RESPONSE, &kResponseSettings);
  h->req.data = h;
  h->res.data = h;
  if (params->forwarded_headers) {
    int n = snprintf(h->forwarding, sizeof h->forwarding,
                     "X-Forwarded-For: %s\r\nX-Forwarded-Proto: https\r\n"
                     "X-Forwarded-Port: %u\r\n",
                     params->client_ip, params->server_port);
    h->forwarding_len = n > 0 && (size_t)n < sizeof h->forwarding ? (size_t)n : 0;
  }
}

void http1_free(struct http1 *h) {
  head_free(&h->req_head);
  head_free(&h->res_head);
}

static bool request_parsing_blocked(const struct http1 *h) {
  return h->error_status || h->backend_broken || h->upgraded ||
         (h->req_state == HTTP1_REQ_WAIT && (h->awaiting_response || h->close_after_response));
}

size_t http1_client_data(struct http1 *h, const uint8_t *data, size_t len) {
  size_t done = 0;
  while (done < len && !request_parsing_blocked(h)) {
    if (h->req_state == HTTP1_REQ_WAIT) { /* the previous exchange is over: next request */
      if (llhttp_get_errno(&h->req) == HPE_PAUSED_UPGRADE)
        llhttp_resume_after_upgrade(&h->req);
      else
        llhttp_resume(&h->req);
      h->req_state = HTTP1_REQ_IDLE;
    }
    const char *start = (const char *)data + done;
    llhttp_errno_t err = llhttp_execute(&h->req, start, len - done);
    if (err == HPE_OK) return len;
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      done += (size_t)(llhttp_get_error_pos(&h->req) - start);
      h->req_state = HTTP1_REQ_WAIT;
      continue;
    }
    if (!h->error_status) {
      h->error_status = 400;
      h->error_reason = err == HPE_PAUSED_H2_UPGRADE ? "HTTP/2 preface on an HTTP/1.1 connection"
                                                     : llhttp_get_error_reason(&h->req);
    }
    return len;
  }
  return done;
}

void http1_backend_data(struct http1 *h, const uint8_t *data, size_t len) {
  if (h->upgraded) {
    h->sink.to_client(h->sink.ctx, data, len);
    return;
  }
  if (!h->awaiting_response && !h->res_reading) {
    h->backend_broken = true;
    h->error_reason = "backend sent data with no request outstanding";
    return;
  }
  llhttp_errno_t err = llhttp_execute(&h->res, (const char *)data, len);
  if (err == HPE_OK) return;
  if (err == HPE_PAUSED) {
    size_t used = (size_t)(llhttp_get_error_pos(&h->res) - (const char *)data);
    llhttp_resume(&h->res);
    if (h->upgraded) {
      if (used < len) h->sink.to_client(h->sink.ctx, data + used, len - used);
    } else if (used < len) {
      h->backend_broken = true;
      h->error_reason = "backend sent data after the response";
    }
    return;
  }
  if (!h->error_reason) h->error_reason = llhttp_get_error_reason(&h->res);
  if (h->response_started)
    h->backend_broken = true;
  else
    h->error_status = 502;
}

void http1_backend_eof(struct http1 *h) {
  if (h->upgraded) return;
  if (h->res_reading && llhttp_message_needs_eof(&h->res)) {
    if (llhttp_finish(&h->res) == HPE_PAUSED || !h->awaiting_response) {
      h->close_after_response = true; /* the body ended with the backend's connection */
      return;
    }
  }
  if (!h->awaiting_response && !h->res_reading) return; /* idle keep-alive close: harmless */
  h->error_reason = h->res_reading ? "backend closed in the middle of a response"
                                   : "backend closed without responding";
  if (h->response_started)
    h->backend_broken = true;
  else
    h->error_status = 502;
}

bool http1_idle(const struct http1 *h) {
  return (h->req_state == HTTP1_REQ_IDLE || h->req_state == HTTP1_REQ_WAIT) &&
         !h->awaiting_response && !h->res_reading;
}

static const char *status_text(int status) {
  switch (status) {
  case 400: return "Bad Request";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 431: return "Request Header Fields Too Large";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Error";
  }
}

size_t http1_error_response(int status, char *out, size_t cap) {
  char body[64];
  int blen = snprintf(body, sizeof body, "%d %s\n", status, status_text(status));
  int n = snprintf(out, cap,
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                   "Connection: close\r\n\r\n%s",
                   status, status_text(status), blen, body);
  return n < 0 ? 0 : MIN((size_t)n, cap - 1);
}
