#include "stapler/ocsp_fetch.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stapler/ocsp_request.h"
#include "stapler/util.h"

struct ocsp_fetch {
  uv_loop_t *loop;
  uv_getaddrinfo_t resolve;
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  uv_timer_t timer;
  int refs; /* open libuv handles plus a pending DNS lookup; freed at zero */
  bool resolving, tcp_open, done, cancelled;
  ocsp_fetch_cb cb;
  void *ctx;
  char host[256];
  uint16_t port;
  char *request_text; /* the HTTP request, written once connected */
  size_t request_len;
  struct ocsp_answer answer;
  char read_buf[16 * 1024];
};

int ocsp_url_parse(const char *url, char *host, size_t host_cap, uint16_t *port, char *path,
                   size_t path_cap) {
  if (strncasecmp(url, "http://", 7) != 0) return -1;
  const char *h = url + 7;
  const char *slash = strchr(h, '/');
  size_t hostport_len = slash ? (size_t)(slash - h) : strlen(h);
  const char *colon = NULL;
  const char *hend = h + hostport_len;
  if (*h == '[') {
    const char *close = memchr(h, ']', hostport_len);
    if (!close) return -1;
    if (close + 1 < hend) {
      if (close[1] != ':') return -1;
      colon = close + 1;
    }
    h++;
    hend = close;
  } else {
    colon = memchr(h, ':', hostport_len);
    if (colon) hend = colon;
  }
  size_t hlen = (size_t)(hend - h);
  if (hlen == 0 || hlen >= host_cap) return -1;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  *port = 80;
  if (colon) {
    char *end;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (end == colon + 1 || p == 0 || p > 65535 || (slash ? end != slash : *end)) return -1;
    *port = (uint16_t)p;
  }
  const char *p = slash ? slash : "/";
  if (strlen(p) >= path_cap) return -1;
  snprintf(path, path_cap, "%s", p);
  for (const char *c = p; *c; c++)
    if ((unsigned char)*c <= ' ' || *c == 0x7f) return -1; /* no spaces or controls */
  return 0;
}

/* ---- ending a fetch: report once, then close every handle --------------------------------*/

static void release(struct ocsp_fetch *f) {
  if (--f->refs > 0) return;
  free(f->request_text);
  ocsp_answer_free(&f->answer);
  free(f);
}

static void on_closed(uv_handle_t *h) { release(h->data); }

static void close_all(struct ocsp_fetch *f) {
  if (!uv_is_closing((uv_handle_t *)&f->timer)) uv_close((uv_handle_t *)&f->timer, on_closed);
  if (f->tcp_open && !uv_is_closing((uv_handle_t *)&f->tcp))
    uv_close((uv_handle_t *)&f->tcp, on_closed);
}

__attribute__((format(printf, 2, 3))) static void finish(struct ocsp_fetch *f, const char *fmt,
                                                          ...) {
  if (f->done) return;
  f->done = true;
  if (f->resolving) uv_cancel((uv_req_t *)&f->resolve); /* its callback still runs */
  struct ocsp_fetch_result r = {.http_status = f->answer.status};
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r.error, sizeof r.error, fmt, ap);
    va_end(ap);
  } else {
    r.ok = 1;
    r.body = f->answer.body;
    r.body_len = f->answer.body_len;
  }
  if (!f->cancelled) f->cb(f->ctx, &r);
  close_all(f);
}

void ocsp_fetch_cancel(struct ocsp_fetch *f) {
  if (!f || f->done) return;
  f->cancelled = true;
  finish(f, "cancelled");
}

static void on_timeout(uv_timer_t *t) {
  struct ocsp_fetch *f = t->data;
  finish(f, "no complete answer within ocsp.timeout");
}

/* ---- reading the answer ------------------------------------------------------------------*/

static int on_headers_complete(llhttp_t *p) {
  struct ocsp_answer *a = p->data;
  a->status = llhttp_get_status_code(p);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  struct ocsp_answer *a = p->data;
  if (a->status != 200) return 0; /* error pages are not kept */
  if (a->body_len + len > OCSP_FETCH_MAX_BODY) {
    a->too_big = true;
    return HPE_USER;
  }
  a->body = xrealloc(a->body, a->body_len + len);
  memcpy(a->body + a->body_len, at, len);
  a->body_len += len;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  struct ocsp_answer *a = p->data;
  a->complete = true;
  return HPE_PAUSED;
}

void ocsp_answer_init(struct ocsp_answer *a) {
  memset(a, 0, sizeof *a);
  llhttp_settings_init(&a->settings);
  a->settings.on_headers_complete = on_headers_complete;
  a->settings.on_body = on_body;
  a->settings.on_message_complete = on_message_complete;
  llhttp_init(&a->parser, HTTP_RESPONSE, &a->settings);
  a->parser.data = a;
}

void ocsp_answer_free(struct ocsp_answer *a) {
  free(a->body);
  a->body = NULL;
}

static enum ocsp_answer_state judge(struct ocsp_answer *a, char *error, size_t error_len) {
  error[0] = '\0';
  if (a->status >= 300 && a->status < 400)
    snprintf(error, error_len, "responder answered with a redirect (%d), which OCSP clients do "
             "not follow", a->status);
  else if (a->status != 200)
    snprintf(error, error_len, "responder answered HTTP %d", a->status);
  else if (a->body_len == 0)
    snprintf(error, error_len, "responder answered 200 with an empty body");
  return error[0] ? OCSP_ANSWER_FAILED : OCSP_ANSWER_DONE;
}

enum ocsp_answer_state ocsp_answer_feed(struct ocsp_answer *a, const uint8_t *data, size_t len,
                                        char *error, size_t error_len) {
  llhttp_errno_t err = llhttp_execute(&a->parser, (const char *)data, len);
  if (err == HPE_OK) return OCSP_ANSWER_MORE;
  if (err == HPE_PAUSED && a->complete) return judge(a, error, error_len);
  if (a->too_big)
    snprintf(error, error_len, "answer larger than %d bytes", OCSP_FETCH_MAX_BODY);
  else
    snprintf(error, error_len, "responder did not speak HTTP: %s",
             llhttp_get_error_reason(&a->parser));
  return OCSP_ANSWER_FAILED;
}

enum ocsp_answer_state ocsp_answer_eof(struct ocsp_answer *a, char *error, size_t error_len) {
  if (!a->complete && llhttp_finish(&a->parser) == HPE_PAUSED && a->complete)
    return judge(a, error, error_len);
  if (a->complete) return judge(a, error, error_len);
  snprintf(error, error_len, "responder closed the connection before a complete answer");
  return OCSP_ANSWER_FAILED;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct ocsp_fetch *f = h->data;
  *buf = uv_buf_init(f->read_buf, sizeof f->read_buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct ocsp_fetch *f = s->data;
  if (f->done || nread == 0) return;
  char error[200];
  enum ocsp_answer_state state;
  if (nread == UV_EOF) {
    state = ocsp_answer_eof(&f->answer, error, sizeof error);
  } else if (nread < 0) {
    snprintf(error, sizeof error, "reading from the responder: %s", uv_strerror((int)nread));
    state = OCSP_ANSWER_FAILED;
  } else {
    state = ocsp_answer_feed(&f->answer, (const uint8_t *)buf->base, (size_t)nread, error,
                             sizeof error);
  }
  if (state == OCSP_ANSWER_DONE)
    finish(f, NULL);
  else if (state == OCSP_ANSWER_FAILED)
    finish(f, "%s", error);
}

/* ---- connecting and sending ---------------------------------------------------------------*/

static void on_written(uv_write_t *w, int status) {
  struct ocsp_fetch *f = w->data;
  if (f->done) return;
  if (status < 0) finish(f, "cannot send the request: %s", uv_strerror(status));
}

static void on_connect(uv_connect_t *c, int status) {
  struct ocsp_fetch *f = c->data;
  if (f->done) return;
  if (status < 0) {
    finish(f, "cannot connect to %s:%u: %s", f->host, f->port, uv_strerror(status));
    return;
  }
  uv_buf_t buf = uv_buf_init(f->request_text, (unsigned)f->request_len);
  f->write.data = f;
  int rc = uv_write(&f->write, (uv_stream_t *)&f->tcp, &buf, 1, on_written);
  if (rc == 0) rc = uv_read_start((uv_stream_t *)&f->tcp, on_alloc, on_read);
  if (rc) finish(f, "cannot send the request: %s", uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  struct ocsp_fetch *f = req->data;
  f->resolving = false;
  if (f->done || status < 0) {
    if (!f->done) finish(f, "cannot resolve %s: %s", f->host, uv_strerror(status));
  } else {
    uv_tcp_init(f->loop, &f->tcp);
    f->tcp.data = f;
    f->tcp_open = true;
    f->refs++;
    f->connect.data = f;
    int rc = uv_tcp_connect(&f->connect, &f->tcp, res->ai_addr, on_connect);
    if (rc) finish(f, "cannot connect to %s:%u: %s", f->host, f->port, uv_strerror(rc));
  }
  uv_freeaddrinfo(res);
  release(f); /* the lookup's reference */
}

static char *format_request(const char *url, const char *host_header, const char *path,
                            const uint8_t *der, size_t der_len, size_t *out_len) {
  char *get_url = ocsp_request_get_url(url, der, der_len);
  char *text = NULL;
  int n;
  if (get_url) {
    char host[256], get_path[1024];
    uint16_t port;
    if (ocsp_url_parse(get_url, host, sizeof host, &port, get_path, sizeof get_path) != 0) {
      free(get_url);
      return NULL;
    }
    n = asprintf(&text,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: stapler/%s\r\n"
                 "Accept: application/ocsp-response\r\nConnection: close\r\n\r\n",
                 get_path, host_header, STAPLER_VERSION);
    free(get_url);
    if (n < 0) return NULL;
    *out_len = (size_t)n;
    return text;
  }
  n = asprintf(&text,
               "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: stapler/%s\r\n"
               "Content-Type: application/ocsp-request\r\nAccept: application/ocsp-response\r\n"
               "Content-Length: %zu\r\nConnection: close\r\n\r\n",
               path, host_header, STAPLER_VERSION, der_len);
  if (n < 0) return NULL;
  text = xrealloc(text, (size_t)n + der_len);
  memcpy(text + n, der, der_len);
  *out_len = (size_t)n + der_len;
  return text;
}

struct ocsp_fetch *ocsp_fetch_start(uv_loop_t *loop, const char *url, const uint8_t *request,
                                    size_t request_len, uint64_t timeout_ms, ocsp_fetch_cb cb,
                                    void *ctx, char *error, size_t error_len) {
  char host[256], path[1024], host_header[300];
  uint16_t port;
  if (ocsp_url_parse(url, host, sizeof host, &port, path, sizeof path) != 0) {
    snprintf(error, error_len, "unusable OCSP URL '%s' (only http://host[:port]/path)", url);
    return NULL;
  }
  bool v6 = strchr(host, ':') != NULL;
  if (port == 80)
    snprintf(host_header, sizeof host_header, v6 ? "[%s]" : "%s", host);
  else
    snprintf(host_header, sizeof host_header, v6 ? "[%s]:%u" : "%s:%u", host, port);
  struct ocsp_fetch *f = xcalloc(1, sizeof *f);
  f->request_text = format_request(url, host_header, path, request, request_len, &f->request_len);
  if (!f->request_text) {
    snprintf(error, error_len, "cannot build the request for '%s'", url);
    free(f);
    return NULL;
  }
  f->loop = loop;
  f->cb = cb;
  f->ctx = ctx;
  f->port = port;
  snprintf(f->host, sizeof f->host, "%s", host);
  ocsp_answer_init(&f->answer);
  uv_timer_init(loop, &f->timer);
  f->timer.data = f;
  f->refs = 2; /* the timer, and the DNS lookup until its callback has run */
  uv_timer_start(&f->timer, on_timeout, timeout_ms, 0);
  f->resolve.data = f;
  char service[8];
  snprintf(service, sizeof service, "%u", port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  int rc = uv_getaddrinfo(loop, &f->resolve, on_resolved, host, service, &hints);
  f->resolving = rc == 0;
  if (rc) {
    f->refs--; /* no callback will come */
    finish(f, "cannot resolve %s: %s", host, uv_strerror(rc));
  }
  return f;
}
