#include "stapler/admin.h"

#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stapler/log.h"
#include "stapler/metrics.h"
#include "stapler/preflight.h"
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

static void on_accept(struct acceptor *acc, int fd) {
  struct admin *a = acc->data;
  uv_loop_t *loop = a->server->loop;
  struct admin_conn *ac = xcalloc(1, sizeof *ac);
  ac->server = a->server;
  uv_tcp_init(loop, &ac->tcp);
  uv_timer_init(loop, &ac->timer);
  ac->tcp.data = ac->timer.data = ac;
  ac->handles = 2;
  llhttp_init(&ac->parser, HTTP_REQUEST, &kSettings);
  ac->parser.data = ac;
  if (uv_tcp_open(&ac->tcp, fd) != 0) {
    close(fd);
    close_conn(ac);
    return;
  }
  if (uv_read_start((uv_stream_t *)&ac->tcp, on_alloc, on_read) != 0) {
    close_conn(ac);
    return;
  }
  uv_timer_start(&ac->timer, on_timeout, ADMIN_TIMEOUT_MS, 0);
}

static void on_pause(struct acceptor *acc, int err) {
  struct admin *a = acc->data;
  log_warn("admin endpoint %s: accept failed: %s: accepting again in %d ms", a->address,
           uv_strerror(err), ACCEPTOR_PAUSE_MS);
}

static void on_closed(struct acceptor *acc) { free(acc->data); }

struct admin *admin_start(struct server *s, const struct config_addr *addr, char *err,
                          size_t err_len) {
  struct admin *a = xcalloc(1, sizeof *a);
  a->server = s;
  a->acceptor.data = a;
  snprintf(a->address, sizeof a->address, "%s", addr->text);
  const struct sockaddr *sa = (const struct sockaddr *)&addr->ss;
  int one = 1;
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(fd, sa, addr->ss_len) < 0 || listen(fd, 64) < 0) {
    snprintf(err, err_len, "cannot listen on %s: %s%s", addr->text, strerror(errno),
             preflight_bind_hint(addr, errno));
    if (fd >= 0) close(fd);
    free(a);
    return NULL;
  }
  int rc = acceptor_start(&a->acceptor, s->loop, fd, on_accept, on_pause);
  if (rc) {
    snprintf(err, err_len, "cannot listen on %s: %s", addr->text, uv_strerror(rc));
    admin_stop(a);
    return NULL;
  }
  return a;
}

void admin_stop(struct admin *a) {
  if (!a) return;
  if (a->acceptor.open_handles == 0)
    free(a);
  else
    acceptor_close(&a->acceptor, on_closed);
}
