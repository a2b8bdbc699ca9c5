#include "stapler/admin.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/log.h"
#include "stapler/metrics.h"
#include "stapler/server.h"
#include "stapler/strbuf.h"
#include "stapler/util.h"

#define ADMIN_TIMEOUT_MS 5000
#define ADMIN_MAX_REQUEST 8192

/* One admin connection: read a request, answer, close. */
struct admin_conn {
  struct server *server; /* not the admin: it may be replaced by a reload meanwhile */
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t write;
  int handles;
  llhttp_t parser;
  char path[256];
  size_t path_len, received;
  bool answered;
  struct strbuf out;
  char read_buf[2048];
};

static void on_conn_closed(uv_handle_t *h) {
  struct admin_conn *ac = h->data;
  if (--ac->handles > 0) return;
  strbuf_free(&ac->out);
  free(ac);
}

static void close_conn(struct admin_conn *ac) {
  if (!uv_is_closing((uv_handle_t *)&ac->tcp)) uv_close((uv_handle_t *)&ac->tcp, on_conn_closed);
  if (!uv_is_closing((uv_handle_t *)&ac->timer))
    uv_close((uv_handle_t *)&ac->timer, on_conn_closed);
}

static void on_written(uv_write_t *w, int status) { close_conn(w->data); }

static void respond(struct admin_conn *ac, int status, const char *reason, const char *type,
                    struct strbuf *body) {
  if (ac->answered) return;
  ac->answered = true;
  strbuf_printf(&ac->out,
                "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                status, reason, type, body->len);
  /* A HEAD answer announces the length of what GET would send, and sends nothing. */
  bool head = llhttp_get_method(&ac->parser) == HTTP_HEAD;
  if (body->len && !head) strbuf_printf(&ac->out, "%.*s", (int)body->len, body->data);
  uv_buf_t buf = uv_buf_init(ac->out.data, (unsigned)ac->out.len);
  ac->write.data = ac;
  uv_read_stop((uv_stream_t *)&ac->tcp);
  if (uv_write(&ac->write, (uv_stream_t *)&ac->tcp, &buf, 1, on_written) != 0) close_conn(ac);
}

static void route(struct admin_conn *ac) {
  struct server *s = ac->server;
  struct strbuf body = {0};
  char *q = memchr(ac->path, '?', ac->path_len);
  size_t len = q ? (size_t)(q - ac->path) : ac->path_len;
  if (llhttp_get_method(&ac->parser) != HTTP_GET && llhttp_get_method(&ac->parser) != HTTP_HEAD) {
    strbuf_printf(&body, "only GET\n");
    respond(ac, 405, "Method Not Allowed", "text/plain", &body);
  } else if (len == 8 && !memcmp(ac->path, "/metrics", 8)) {
    metrics_render(s, &body);
    respond(ac, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", &body);
  } else if (len == 8 && !memcmp(ac->path, "/healthz", 8)) {
    bool healthy = metrics_health(s, &body);
    respond(ac, healthy ? 200 : 503, healthy ? "OK" : "Service Unavailable", "text/plain",
            &body);
  } else if (len == 7 && !memcmp(ac->path, "/status", 7)) {
    metrics_status_json(s, &body);
    respond(ac, 200, "OK", "application/json", &body);
  } else {
    strbuf_printf(&body, "not found: try /metrics, /healthz or /status\n");
    respond(ac, 404, "Not Found", "text/plain", &body);
  }
  strbuf_free(&body);
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  struct admin_conn *ac = p->data;
  size_t n = MIN(len, sizeof ac->path - 1 - ac->path_len);
  memcpy(ac->path + ac->path_len, at, n);
  ac->path_len += n;
  ac->path[ac->path_len] = '\0';
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  route(p->data);
  return HPE_PAUSED;
}

static const llhttp_settings_t kSettings = {.on_url = on_url,
                                            .on_headers_complete = on_headers_complete};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct admin_conn *ac = h->data;
  *buf = uv_buf_init(ac->read_buf, sizeof ac->read_buf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  struct admin_conn *ac = stream->data;
  if (nread == 0 || ac->answered) return;
  if (nread < 0) {
    close_conn(ac);
    return;
  }
  ac->received += (size_t)nread;
  llhttp_errno_t err = llhttp_execute(&ac->parser, buf->base, (size_t)nread);
  if (ac->answered) return;
  if ((err != HPE_OK && err != HPE_PAUSED) || ac->received > ADMIN_MAX_REQUEST) {
    struct strbuf body = {0};
    strbuf_printf(&body, "bad request\n");
    respond(ac, 400, "Bad Request", "text/plain", &body);
    strbuf_free(&body);
  }
}

static void on_timeout(uv_timer_t *t) { close_conn(t->data); }

static void on_connection(uv_stream_t *listener, int status) {
  struct admin *a = listener->data;
  if (status < 0) return;
  struct admin_conn *ac = xcalloc(1, sizeof *ac);
  ac->server = a->server;
  uv_tcp_init(listener->loop, &ac->tcp);
  uv_timer_init(listener->loop, &ac->timer);
  ac->tcp.data = ac->timer.data = ac;
  ac->handles = 2;
  llhttp_init(&ac->parser, HTTP_REQUEST, &kSettings);
  ac->parser.data = ac;
  if (uv_accept(listener, (uv_stream_t *)&ac->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&ac->tcp, on_alloc, on_read) != 0) {
    close_conn(ac);
    return;
  }
  uv_timer_start(&ac->timer, on_timeout, ADMIN_TIMEOUT_MS, 0);
}

static void on_listener_closed(uv_handle_t *h) { free(h->data); }

struct admin *admin_start(struct server *s, const struct config_addr *addr, char *err,
                          size_t err_len) {
  struct admin *a = xcalloc(1, sizeof *a);
  a->server = s;
  snprintf(a->address, sizeof a->address, "%s", addr->text);
  uv_tcp_init(s->loop, &a->listener);
  a->listener.data = a;
  int rc = uv_tcp_bind(&a->listener, (const struct sockaddr *)&addr->ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&a->listener, 64, on_connection);
  if (rc) {
    snprintf(err, err_len, "cannot listen on %s: %s", addr->text, uv_strerror(rc));
    admin_stop(a);
    return NULL;
  }
  return a;
}

void admin_stop(struct admin *a) {
  if (a) uv_close((uv_handle_t *)&a->listener, on_listener_closed);
}
