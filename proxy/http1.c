#include "stapler/http1.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "stapler/util.h"

/* ---- the reader ----------------------------------------------------------------------------*/

static struct http1_reader *of(llhttp_t *p) { return p->data; }

static int fail(struct http1_reader *r, int status, const char *why) {
  r->error_status = status;
  r->error = why;
  llhttp_set_error_reason(&r->parser, why);
  return HPE_USER;
}

static bool is_request(const struct http1_reader *r) { return r->parser.type == HTTP_REQUEST; }

static int on_span(llhttp_t *p, enum http_span kind, const char *at, size_t len) {
  struct http1_reader *r = of(p);
  if (r->in_trailers && kind == HTTP_SPAN_TARGET) return 0;
  if (http_head_append(&r->head, kind, at, len, r->max_header_bytes)) return 0;
  return is_request(r) ? fail(r, 431, "request headers too large")
                       : fail(r, 502, "response headers too large");
}

static int on_target(llhttp_t *p, const char *at, size_t len) {
  return on_span(p, HTTP_SPAN_TARGET, at, len);
}
static int on_name(llhttp_t *p, const char *at, size_t len) {
  return on_span(p, HTTP_SPAN_NAME, at, len);
}
static int on_value(llhttp_t *p, const char *at, size_t len) {
  return on_span(p, HTTP_SPAN_VALUE, at, len);
}

static int on_message_begin(llhttp_t *p) {
  struct http1_reader *r = of(p);
  http_head_reset(&r->head);
  r->in_trailers = false;
  r->trailer_from = 0;
  r->state = HTTP1_READER_HEAD;
  return 0;
}

/* Field names must be tokens (llhttp lets "Host : x" through) and values free of control
 * bytes; checked over fields [from, count). */
static bool fields_valid(const struct http_head *h, size_t from) {
  for (size_t i = from; i < h->field_count; i++) {
    const struct http_field *f = &h->fields[i];
    if (!http_token_valid(http_head_name(h, i), f->name_len) ||
        !http_field_value_valid(http_head_value(h, i), f->value_len))
      return false;
  }
  return true;
}

/* Trims a stored value's surrounding whitespace in place. */
static void trim_value(struct http_head *h, size_t i) {
  struct http_field *f = &h->fields[i];
  const char *v = h->text + f->value_off;
  while (f->value_len && (v[0] == ' ' || v[0] == '\t')) v++, f->value_off++, f->value_len--;
  while (f->value_len && (v[f->value_len - 1] == ' ' || v[f->value_len - 1] == '\t'))
    f->value_len--;
}

/* The one Upgrade token that may be forwarded: the first the client lists whose protocol name
 * (before any "/version") is in backend.upgrades. */
static void choose_upgrade(struct http1_reader *r) {
  struct http_head *h = &r->head;
  for (size_t i = 0; i < h->field_count; i++) {
    if (!http_head_name_is(h, i, "upgrade")) continue;
    const char *v = http_head_value(h, i);
    size_t n = h->fields[i].value_len, pos = 0;
    while (pos < n) {
      size_t s = pos;
      while (pos < n && v[pos] != ',') pos++;
      size_t e = pos++;
      while (s < e && (v[s] == ' ' || v[s] == '\t')) s++;
      while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
      size_t name_len = 0;
      while (s + name_len < e && v[s + name_len] != '/') name_len++;
      if (!http_token_valid(v + s, name_len)) continue;
      for (size_t k = 0; k < r->upgrade_count; k++) {
        if (strlen(r->upgrades[k]) == name_len && !strncasecmp(v + s, r->upgrades[k], name_len)) {
          h->upgrade_off = h->fields[i].value_off + (uint32_t)s;
          h->upgrade_len = (uint32_t)(e - s);
          return;
        }
      }
    }
  }
}

static int check_request(struct http1_reader *r) {
  llhttp_t *p = &r->parser;
  struct http_head *h = &r->head;
  const char *method = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
  h->method_off = http_head_store(h, method, strlen(method));
  h->method_len = (uint32_t)strlen(method);
  h->version_major = llhttp_get_http_major(p);
  h->version_minor = llhttp_get_http_minor(p);
  if (llhttp_get_method(p) == HTTP_CONNECT) return fail(r, 405, "CONNECT is not supported");
  if (h->version_major != 1 || h->version_minor > 1)
    return fail(r, 505, "HTTP version other than 1.0 and 1.1");
  if (!fields_valid(h, 0)) return fail(r, 400, "invalid header field");
  for (size_t i = 0; i < h->field_count; i++) trim_value(h, i);
  const char *bad_target = http_head_check_target(h);
  if (bad_target) return fail(r, 400, bad_target);
  size_t host;
  size_t hosts = http_head_count(h, "host", &host);
  if (hosts > 1) return fail(r, 400, "more than one Host header");
  if (hosts == 0 && h->version_minor >= 1) return fail(r, 400, "HTTP/1.1 request without Host");
  if (hosts == 1) {
    if (!http_authority_valid(http_head_value(h, host), h->fields[host].value_len))
      return fail(r, 400, "invalid Host header");
    if (!h->has_authority) {
      h->authority_off = h->fields[host].value_off;
      h->authority_len = h->fields[host].value_len;
      h->has_authority = true;
    }
  }
  if (p->flags & F_TRANSFER_ENCODING) {
    if (h->version_minor == 0) return fail(r, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (!(p->flags & F_CHUNKED))
      return fail(r, 400, "Transfer-Encoding without chunked as the final coding");
    size_t te;
    if (http_head_count(h, "transfer-encoding", &te) != 1 ||
        h->fields[te].value_len != 7 || strncasecmp(http_head_value(h, te), "chunked", 7))
      return fail(r, 501, "transfer coding other than chunked");
    h->framing = HTTP_FRAMING_CHUNKED;
  } else if (p->content_length > 0) {
    h->framing = HTTP_FRAMING_LENGTH;
    h->content_length = p->content_length;
  } else {
    h->framing = HTTP_FRAMING_NONE;
  }
  if (p->upgrade) choose_upgrade(r);
  return 0;
}

static int check_response(struct http1_reader *r) {
  llhttp_t *p = &r->parser;
  struct http_head *h = &r->head;
  h->status = llhttp_get_status_code(p);
  h->version_major = llhttp_get_http_major(p);
  h->version_minor = llhttp_get_http_minor(p);
  if (h->version_major != 1 || h->version_minor > 1)
    return fail(r, 502, "response in an HTTP version other than 1.0 and 1.1");
  if (h->status < 100 || h->status > 599) return fail(r, 502, "response status out of range");
  if (!fields_valid(h, 0)) return fail(r, 502, "invalid header field in the response");
  for (size_t i = 0; i < h->field_count; i++) trim_value(h, i);
  for (uint32_t i = 0; i < h->target_len; i++) {
    unsigned char c = (unsigned char)h->text[h->target_off + i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) return fail(r, 502, "control byte in the reason");
  }
  /* RFC 9112 6.3: these end at the blank line, whatever their fields announce. */
  if (h->status < 200 || h->status == 204 || h->status == 304 || r->response_to_head) {
    h->framing = HTTP_FRAMING_NONE;
    if (h->status == 101) {
      size_t up;
      if (http_head_count(h, "upgrade", &up) == 1) {
        h->upgrade_off = h->fields[up].value_off;
        h->upgrade_len = h->fields[up].value_len;
      }
      return 2; /* llhttp stops: what follows is another protocol */
    }
    return 1; /* no body */
  }
  if (p->flags & F_CHUNKED)
    h->framing = HTTP_FRAMING_CHUNKED;
  else if (!(p->flags & F_TRANSFER_ENCODING) && (p->flags & F_CONTENT_LENGTH))
    h->framing = p->content_length ? HTTP_FRAMING_LENGTH : HTTP_FRAMING_NONE;
  else
    h->framing = HTTP_FRAMING_EOF;
  h->content_length = p->content_length;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  struct http1_reader *r = of(p);
  int rc = is_request(r) ? check_request(r) : check_response(r);
  if (rc == HPE_USER) return rc;
  r->state = HTTP1_READER_BODY;
  r->events->head(r->ctx);
  return rc;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  struct http1_reader *r = of(p);
  r->events->body(r->ctx, (const uint8_t *)at, len);
  return 0;
}

static int on_chunk_header(llhttp_t *p) {
  struct http1_reader *r = of(p);
  if (p->content_length == 0) { /* the last chunk: trailer fields may follow */
    r->in_trailers = true;
    r->head.last_span = HTTP_SPAN_NONE;
    r->trailer_from = r->head.field_count;
  }
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  struct http1_reader *r = of(p);
  if (r->in_trailers) {
    if (!fields_valid(&r->head, r->trailer_from))
      return fail(r, is_request(r) ? 400 : 502, "invalid trailer field");
    for (size_t i = r->trailer_from; i < r->head.field_count; i++) trim_value(&r->head, i);
  }
  r->keep_alive = llhttp_should_keep_alive(p) != 0;
  r->state = HTTP1_READER_DONE;
  r->events->end(r->ctx);
  /* A request or 101 that upgrades makes llhttp stop by itself (HPE_PAUSED_UPGRADE). */
  return p->upgrade ? 0 : HPE_PAUSED;
}

static const llhttp_settings_t kSettings = {
    .on_message_begin = on_message_begin,
    .on_url = on_target,
    .on_status = on_target,
    .on_header_field = on_name,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_header = on_chunk_header,
    .on_message_complete = on_message_complete,
};

void http1_reader_init(struct http1_reader *r, llhttp_type_t type,
                       const struct http1_reader_events *events, void *ctx,
                       size_t max_header_bytes) {
  memset(r, 0, sizeof *r);
  llhttp_init(&r->parser, type, &kSettings);
  r->parser.data = r;
  r->events = events;
  r->ctx = ctx;
  r->max_header_bytes = max_header_bytes;
  r->state = HTTP1_READER_IDLE;
}

void http1_reader_free(struct http1_reader *r) { http_head_free(&r->head); }

static const char *describe(llhttp_errno_t err, const char *reason) {
  switch (err) {
  case HPE_PAUSED_H2_UPGRADE: return "HTTP/2 preface on an HTTP/1.1 connection";
  default: return reason ? reason : "malformed message";
  }
}

size_t http1_reader_feed(struct http1_reader *r, const uint8_t *data, size_t len) {
  if (r->state == HTTP1_READER_DONE || r->state == HTTP1_READER_FAILED) return 0;
  llhttp_errno_t err = llhttp_execute(&r->parser, (const char *)data, len);
  if (err == HPE_OK) return len;
  if ((err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) && r->state == HTTP1_READER_DONE)
    return (size_t)(llhttp_get_error_pos(&r->parser) - (const char *)data);
  r->state = HTTP1_READER_FAILED;
  if (!r->error_status) {
    bool version = err == HPE_INVALID_VERSION || err == HPE_PAUSED_H2_UPGRADE;
    r->error_status = !is_request(r) ? 502 : version ? 505 : 400;
    r->error = describe(err, llhttp_get_error_reason(&r->parser));
  }
  return len;
}

bool http1_reader_needs_eof(const struct http1_reader *r) {
  return r->state == HTTP1_READER_BODY && r->head.framing == HTTP_FRAMING_EOF;
}

bool http1_reader_eof(struct http1_reader *r) {
  if (!http1_reader_needs_eof(r)) return false;
  llhttp_finish(&r->parser); /* calls on_message_complete */
  return r->state == HTTP1_READER_DONE;
}

void http1_reader_next(struct http1_reader *r) {
  if (r->state != HTTP1_READER_DONE) return;
  if (llhttp_get_errno(&r->parser) == HPE_PAUSED_UPGRADE)
    llhttp_resume_after_upgrade(&r->parser);
  else if (llhttp_get_errno(&r->parser) == HPE_PAUSED)
    llhttp_resume(&r->parser);
  r->state = HTTP1_READER_IDLE;
}

bool http1_reader_keep_alive(const struct http1_reader *r) { return r->keep_alive; }

/* ---- the writer ----------------------------------------------------------------------------*/

void http1_writer_flush(struct http1_writer *w) {
  if (w->len) w->emit(w->ctx, (const uint8_t *)w->buf, w->len);
  w->len = 0;
}

void http1_writer_put(struct http1_writer *w, const void *data, size_t n) {
  if (w->len + n > sizeof w->buf) http1_writer_flush(w);
  if (n > sizeof w->buf) {
    w->emit(w->ctx, data, n);
    return;
  }
  memcpy(w->buf + w->len, data, n);
  w->len += n;
}

void http1_writer_str(struct http1_writer *w, const char *s) { http1_writer_put(w, s, strlen(s)); }

static void put_field(struct http1_writer *w, const char *name, size_t nlen, const char *value,
                      size_t vlen) {
  http1_writer_put(w, name, nlen);
  http1_writer_put(w, ": ", 2);
  http1_writer_put(w, value, vlen);
  http1_writer_put(w, "\r\n", 2);
}

static void put_head_field(struct http1_writer *w, const struct http_head *h, size_t i) {
  put_field(w, http_head_name(h, i), h->fields[i].name_len, http_head_value(h, i),
            h->fields[i].value_len);
}

static void put_number(struct http1_writer *w, uint64_t v) {
  char digits[24];
  size_t n = sizeof digits;
  do {
    digits[--n] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  http1_writer_put(w, digits + n, sizeof digits - n);
}

/* Methods whose requests normally carry a body: without one, say so (HTTP/2 clients never
 * send Content-Length for an empty body, and some servers insist on it). */
static bool expects_body(const struct http_head *req) {
  return http_head_method_is(req, "POST") || http_head_method_is(req, "PUT") ||
         http_head_method_is(req, "PATCH");
}

void http1_write_request(struct http1_writer *w, const struct http_head *req, int minor,
                         const char *forwarding, size_t forwarding_len) {
  http1_writer_put(w, req->text + req->method_off, req->method_len);
  http1_writer_put(w, " ", 1);
  http1_writer_put(w, http_head_target(req), req->target_len);
  http1_writer_str(w, minor ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n");
  if (req->has_authority)
    put_field(w, "Host", 4, http_head_authority(req), req->authority_len);
  for (size_t i = 0; i < req->field_count; i++) {
    const char *name = http_head_name(req, i);
    size_t len = req->fields[i].name_len;
    if (http_head_name_is(req, i, "host") || http_head_name_is(req, i, "content-length") ||
        http_is_hop_by_hop(name, len) || http_head_named_by_connection(req, i) ||
        (forwarding && http_is_forwarding(name, len)))
      continue;
    put_head_field(w, req, i);
  }
  if (req->framing == HTTP_FRAMING_LENGTH) {
    http1_writer_str(w, "Content-Length: ");
    put_number(w, req->content_length);
    http1_writer_put(w, "\r\n", 2);
  } else if (req->framing == HTTP_FRAMING_CHUNKED) {
    http1_writer_str(w, "Transfer-Encoding: chunked\r\n");
  } else if (expects_body(req)) {
    http1_writer_str(w, "Content-Length: 0\r\n");
  }
  if (req->upgrade_len) {
    http1_writer_str(w, "Connection: upgrade\r\n");
    put_field(w, "Upgrade", 7, http_head_upgrade(req), req->upgrade_len);
  }
  if (forwarding) http1_writer_put(w, forwarding, forwarding_len);
  http1_writer_put(w, "\r\n", 2);
  http1_writer_flush(w);
}

void http1_write_response(struct http1_writer *w, const struct http_head *res,
                          enum http_framing framing, bool close) {
  int status = res->status;
  char line[16] = "HTTP/1.1 000 ";
  line[9] = (char)('0' + status / 100 % 10);
  line[10] = (char)('0' + status / 10 % 10);
  line[11] = (char)('0' + status % 10);
  http1_writer_put(w, line, 13);
  http1_writer_put(w, http_head_target(res), res->target_len);
  http1_writer_put(w, "\r\n", 2);
  /* A 304 or an answer to HEAD keeps the Content-Length of the representation it describes. */
  bool keep_length = framing == HTTP_FRAMING_NONE && status != 204 && status >= 200;
  for (size_t i = 0; i < res->field_count; i++) {
    const char *name = http_head_name(res, i);
    size_t len = res->fields[i].name_len;
    bool te = http_head_name_is(res, i, "transfer-encoding");
    if (te && framing == HTTP_FRAMING_CHUNKED) {
      put_head_field(w, res, i); /* codings before chunked are the client's business */
      continue;
    }
    if (http_head_name_is(res, i, "content-length") && !keep_length) continue;
    if (http_is_hop_by_hop(name, len) || http_head_named_by_connection(res, i)) continue;
    put_head_field(w, res, i);
  }
  if (framing == HTTP_FRAMING_LENGTH) {
    http1_writer_str(w, "Content-Length: ");
    put_number(w, res->content_length);
    http1_writer_put(w, "\r\n", 2);
  }
  if (status == 101) {
    http1_writer_str(w, "Connection: upgrade\r\n");
    put_field(w, "Upgrade", 7, http_head_upgrade(res), res->upgrade_len);
  } else if (close) {
    http1_writer_str(w, "Connection: close\r\n");
  }
  http1_writer_put(w, "\r\n", 2);
  http1_writer_flush(w);
}

void http1_write_body(struct http1_writer *w, enum http_framing framing, const uint8_t *data,
                      size_t len) {
  if (len == 0) return;
  if (framing == HTTP_FRAMING_CHUNKED) {
    char line[24];
    int k = snprintf(line, sizeof line, "%zx\r\n", len);
    http1_writer_put(w, line, (size_t)k);
    http1_writer_put(w, data, len);
    http1_writer_put(w, "\r\n", 2);
  } else {
    http1_writer_put(w, data, len);
  }
  http1_writer_flush(w);
}

void http1_write_end(struct http1_writer *w, enum http_framing framing,
                     const struct http_head *trailers, size_t from) {
  if (framing != HTTP_FRAMING_CHUNKED) return;
  http1_writer_put(w, "0\r\n", 3);
  for (size_t i = from; trailers && i < trailers->field_count; i++) {
    if (http_is_forbidden_trailer(http_head_name(trailers, i), trailers->fields[i].name_len))
      continue;
    put_head_field(w, trailers, i);
  }
  http1_writer_put(w, "\r\n", 2);
  http1_writer_flush(w);
}

enum http_framing http1_client_framing(const struct http_head *res, int client_minor,
                                       bool *must_close) {
  enum http_framing f = res->framing;
  if (f == HTTP_FRAMING_CHUNKED && client_minor == 0) f = HTTP_FRAMING_EOF;
  *must_close = f == HTTP_FRAMING_EOF;
  return f;
}

static const char *status_text(int status) {
  switch (status) {
  case 400: return "Bad Request";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 431: return "Request Header Fields Too Large";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
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

bool http1_upgrade_accepted(const struct http_head *req, const struct http_head *res) {
  if (!req->upgrade_len || !res->upgrade_len) return false;
  const char *a = http_head_upgrade(req), *b = http_head_upgrade(res);
  size_t an = 0, bn = 0;
  while (an < req->upgrade_len && a[an] != '/') an++;
  while (bn < res->upgrade_len && b[bn] != '/') bn++;
  return an == bn && !strncasecmp(a, b, an);
}
