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
  uv_tcp_t tcp;             /* one connection attempt after another, then the one in use */
  uv_connect_t connect;
  uv_write_t write;
  uv_timer_t timer;         /* the current address's share of the time, then the deadline */
  int refs; /* open libuv handles plus a pending DNS lookup; freed at zero */
  bool resolving, tcp_open, connected, done, cancelled;
  ocsp_fetch_cb cb;
  void *ctx;
  char host[256];
  uint16_t port;
  struct addrinfo *addrs;   /* the lookup's answer, owned */
  struct addrinfo *next;    /* the address to try when the current one fails */
  char current[64];         /* the address being tried, for messages */
  unsigned attempts;
  char failures[200];       /* "ADDRESS: why" for each address that failed */
  uint64_t deadline;        /* uv_now() at which the whole fetch gives up */
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
  if (f->addrs) uv_freeaddrinfo(f->addrs);
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
  struct ocsp_fetch_result r = {.http_status = f->answer.status,
                                .content_type = f->answer.content_type};
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

/* ---- reading the answer ------------------------------------------------------------------*/

/* 1xx answers (100 Continue, 103 Early Hints) come before the real one (RFC 9110 15.2); 101
 * would switch protocols and is no answer at all. */
static bool is_interim(int status) { return status >= 100 && status < 200 && status != 101; }

static int on_headers_complete(llhttp_t *p) {
  struct ocsp_answer *a = p->data;
  a->status = llhttp_get_status_code(p);
  a->interim = is_interim(a->status);
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  struct ocsp_answer *a = p->data;
  if (a->field_len + len >= sizeof a->field) {
    a->field_len = sizeof a->field;
    return 0;
  }
  memcpy(a->field + a->field_len, at, len);
  a->field_len += len;
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  struct ocsp_answer *a = p->data;
  a->in_content_type = a->field_len == 12 && !strncasecmp(a->field, "content-type", 12);
  if (a->in_content_type) a->content_type_len = 0; /* the last one counts */
  a->field_len = 0;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  struct ocsp_answer *a = p->data;
  if (!a->in_content_type) return 0;
  size_t n = MIN(len, sizeof a->content_type - 1 - a->content_type_len);
  memcpy(a->content_type + a->content_type_len, at, n);
  a->content_type_len += n;
  a->content_type[a->content_type_len] = '\0';
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  struct ocsp_answer *a = p->data;
  a->in_content_type = false;
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
  if (a->interim) { /* forget it and read on: the real answer follows */
    a->interim = false;
    a->status = 0;
    a->content_type_len = 0;
    a->content_type[0] = '\0';
    return 0;
  }
  a->complete = true;
  return HPE_PAUSED;
}

void ocsp_answer_init(struct ocsp_answer *a) {
  memset(a, 0, sizeof *a);
  llhttp_settings_init(&a->settings);
  a->settings.on_headers_complete = on_headers_complete;
  a->settings.on_header_field = on_header_field;
  a->settings.on_header_field_complete = on_header_field_complete;
  a->settings.on_header_value = on_header_value;
  a->settings.on_header_value_complete = on_header_value_complete;
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

bool ocsp_media_type_is(const char *content_type, const char *want) {
  while (*content_type == ' ' || *content_type == '\t') content_type++;
  size_t n = strcspn(content_type, ";");
  while (n > 0 && (content_type[n - 1] == ' ' || content_type[n - 1] == '\t')) n--;
  return n == strlen(want) && !strncasecmp(content_type, want, n);
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

/* ---- connecting, one address after another, and sending --------------------------------------*/

static void try_next_address(struct ocsp_fetch *f);

static void on_address_closed(uv_handle_t *h) {
  struct ocsp_fetch *f = h->data;
  f->tcp_open = false;
  if (!f->done) try_next_address(f);
  release(f);
}

/* The current address failed: its socket is closed, and once it is, the next one is tried. */
static void give_up_address(struct ocsp_fetch *f, const char *why) {
  size_t n = strlen(f->failures);
  snprintf(f->failures + n, sizeof f->failures - n, "%s%s: %s", n ? "; " : "", f->current, why);
  uv_close((uv_handle_t *)&f->tcp, on_address_closed);
}

static void on_timer(uv_timer_t *t) {
  struct ocsp_fetch *f = t->data;
  if (f->tcp_open && !f->connected && uv_now(f->loop) < f->deadline) {
    /* This address's share is over (unless it is being given up already). */
    if (!uv_is_closing((uv_handle_t *)&f->tcp))
      give_up_address(f, "no answer to the connection attempt");
    return;
  }
  if (f->failures[0])
    finish(f, "no complete answer within ocsp.timeout (%s)", f->failures);
  else
    finish(f, "no complete answer within ocsp.timeout");
}

static void on_written(uv_write_t *w, int status) {
  struct ocsp_fetch *f = w->data;
  if (f->done) return;
  if (status < 0) finish(f, "cannot send the request: %s", uv_strerror(status));
}

static void on_connect(uv_connect_t *c, int status) {
  struct ocsp_fetch *f = c->data;
  /* A given-up attempt ends here too, cancelled, while its socket closes. */
  if (f->done || uv_is_closing((uv_handle_t *)&f->tcp)) return;
  if (status < 0) {
    give_up_address(f, uv_strerror(status));
    return;
  }
  f->connected = true;
  uint64_t now = uv_now(f->loop);
  uv_timer_start(&f->timer, on_timer, f->deadline > now ? f->deadline - now : 0, 0);
  uv_buf_t buf = uv_buf_init(f->request_text, (unsigned)f->request_len);
  f->write.data = f;
  int rc = uv_write(&f->write, (uv_stream_t *)&f->tcp, &buf, 1, on_written);
  if (rc == 0) rc = uv_read_start((uv_stream_t *)&f->tcp, on_alloc, on_read);
  if (rc) finish(f, "cannot send the request: %s", uv_strerror(rc));
}

static void describe_address(const struct sockaddr *sa, char *out, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(in6, ip, sizeof ip);
    snprintf(out, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
  } else {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    uv_ip4_name(in, ip, sizeof ip);
    snprintf(out, cap, "%s:%u", ip, ntohs(in->sin_port));
  }
}

/* Every address failed: one message naming each, or just the reason when there was one. */
static void fail_all(struct ocsp_fetch *f) {
  if (f->attempts == 1)
    finish(f, "cannot connect to %s:%u: %s", f->host, f->port,
           f->failures + strlen(f->current) + 2);
  else
    finish(f, "cannot connect to %s:%u (%s)", f->host, f->port, f->failures);
}

/* Each address gets an equal share of the time left, so that one where packets vanish leaves
 * time for the others. */
static void try_next_address(struct ocsp_fetch *f) {
  struct addrinfo *ai = f->next;
  if (!ai) {
    fail_all(f);
    return;
  }
  f->next = ai->ai_next;
  f->attempts++;
  describe_address(ai->ai_addr, f->current, sizeof f->current);
  unsigned left = 1;
  for (const struct addrinfo *a = f->next; a; a = a->ai_next) left++;
  uint64_t now = uv_now(f->loop);
  uv_timer_start(&f->timer, on_timer, f->deadline > now ? (f->deadline - now) / left : 0, 0);
  uv_tcp_init(f->loop, &f->tcp);
  f->tcp.data = f;
  f->tcp_open = true;
  f->refs++;
  f->connect.data = f;
  int rc = uv_tcp_connect(&f->connect, &f->tcp, ai->ai_addr, on_connect);
  if (rc) give_up_address(f, uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  struct ocsp_fetch *f = req->data;
  f->resolving = false;
  if (status == 0) f->addrs = f->next = res; /* freed with the fetch */
  if (!f->done) {
    if (status < 0)
      finish(f, "cannot resolve %s: %s", f->host, uv_strerror(status));
    else
      try_next_address(f);
  }
  release(f); /* the lookup's reference */
}

/* ---- starting --------------------------------------------------------------------------------*/

/* Where a URL points, and the Host header for it. */
struct target {
  char host[256], path[1024], host_header[300];
  uint16_t port;
};

static bool parse_target(const char *url, struct target *t) {
  if (ocsp_url_parse(url, t->host, sizeof t->host, &t->port, t->path, sizeof t->path) != 0)
    return false;
  bool v6 = strchr(t->host, ':') != NULL;
  if (t->port == 80)
    snprintf(t->host_header, sizeof t->host_header, v6 ? "[%s]" : "%s", t->host);
  else
    snprintf(t->host_header, sizeof t->host_header, v6 ? "[%s]:%u" : "%s:%u", t->host, t->port);
  return true;
}

static char *format_get(const char *path, const char *host_header, const char *accept,
                        size_t *out_len) {
  char *text = NULL;
  int n = asprintf(&text,
                   "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: stapler/%s\r\nAccept: %s\r\n"
                   "Connection: close\r\n\r\n",
                   path, host_header, STAPLER_VERSION, accept);
  if (n < 0) return NULL;
  *out_len = (size_t)n;
  return text;
}

static char *format_request(const char *url, const struct target *t, const uint8_t *der,
                            size_t der_len, size_t *out_len) {
  char *get_url = ocsp_request_get_url(url, der, der_len);
  if (get_url) {
    struct target get;
    char *text = parse_target(get_url, &get)
                     ? format_get(get.path, t->host_header, "application/ocsp-response", out_len)
                     : NULL;
    free(get_url);
    return text;
  }
  char *text = NULL;
  int n = asprintf(&text,
                   "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: stapler/%s\r\n"
                   "Content-Type: application/ocsp-request\r\n"
                   "Accept: application/ocsp-response\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n",
                   t->path, t->host_header, STAPLER_VERSION, der_len);
  if (n < 0) return NULL;
  text = xrealloc(text, (size_t)n + der_len);
  memcpy(text + n, der, der_len);
  *out_len = (size_t)n + der_len;
  return text;
}

/* Takes `request_text` (heap). The callback runs later, never from here: NULL (with `error`)
 * when the lookup cannot even start. */
static struct ocsp_fetch *begin(uv_loop_t *loop, const struct target *t, char *request_text,
                                size_t request_len, uint64_t timeout_ms, ocsp_fetch_cb cb,
                                void *ctx, char *error, size_t error_len) {
  struct ocsp_fetch *f = xcalloc(1, sizeof *f);
  f->request_text = request_text;
  f->request_len = request_len;
  f->loop = loop;
  f->cb = cb;
  f->ctx = ctx;
  f->port = t->port;
  snprintf(f->host, sizeof f->host, "%s", t->host);
  ocsp_answer_init(&f->answer);
  f->resolve.data = f;
  char service[8];
  snprintf(service, sizeof service, "%u", t->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  int rc = uv_getaddrinfo(loop, &f->resolve, on_resolved, t->host, service, &hints);
  if (rc) { /* no handle is open yet: freed at once */
    snprintf(error, error_len, "cannot resolve %s: %s", t->host, uv_strerror(rc));
    f->refs = 1;
    release(f);
    return NULL;
  }
  f->resolving = true;
  f->refs = 2; /* the timer, and the DNS lookup until its callback has run */
  uv_timer_init(loop, &f->timer);
  f->timer.data = f;
  f->deadline = uv_now(loop) + timeout_ms;
  uv_timer_start(&f->timer, on_timer, timeout_ms, 0);
  return f;
}

struct ocsp_fetch *ocsp_fetch_start(uv_loop_t *loop, const char *url, const uint8_t *request,
                                    size_t request_len, uint64_t timeout_ms, ocsp_fetch_cb cb,
                                    void *ctx, char *error, size_t error_len) {
  struct target t;
  if (!parse_target(url, &t)) {
    snprintf(error, error_len, "unusable OCSP URL '%s' (only http://host[:port]/path)", url);
    return NULL;
  }
  size_t len;
  char *text = format_request(url, &t, request, request_len, &len);
  if (!text) {
    snprintf(error, error_len, "cannot build the request for '%s'", url);
    return NULL;
  }
  return begin(loop, &t, text, len, timeout_ms, cb, ctx, error, error_len);
}

struct ocsp_fetch *ocsp_fetch_get(uv_loop_t *loop, const char *url, uint64_t timeout_ms,
                                  ocsp_fetch_cb cb, void *ctx, char *error, size_t error_len) {
  struct target t;
  size_t len;
  char *text = parse_target(url, &t) ? format_get(t.path, t.host_header,
                                                  "application/pkix-cert, application/pkcs7-mime",
                                                  &len)
                                     : NULL;
  if (!text) {
    snprintf(error, error_len, "unusable URL '%s' (only http://host[:port]/path)", url);
    return NULL;
  }
  return begin(loop, &t, text, len, timeout_ms, cb, ctx, error, error_len);
}
