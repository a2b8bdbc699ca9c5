/* The backend side of a connection: connecting, reading, writing, closing. In HTTP mode the
 * backend connection may close between requests (Cowboy closes idle keep-alive connections
 * after a few seconds); the next request then opens a new one. */
#include <stddef.h>

#include "stapler/conn.h"
#include "stapler/generation.h"
#include "stapler/log.h"
#include "stapler/worker.h"

static uv_stream_t *backend_stream(struct conn *c) { return (uv_stream_t *)&c->backend; }

bool backend_congested(const struct conn *c) {
  return c->to_backend.len + c->backend_inflight > CONN_HIGH_WATER;
}

void backend_send(struct conn *c, const uint8_t *data, size_t len) {
  bufchain_append(&c->to_backend, &c->worker->pool, data, len);
}

void backend_send_buf(struct conn *c, struct buf *b) {
  if (b->off < b->len)
    bufchain_push(&c->to_backend, b);
  else
    buf_put(b);
}

static void on_backend_closed(uv_handle_t *h) {
  struct conn *c = h->data;
  c->backend_state = BACKEND_NONE;
  c->backend_shutdown = false;
  bool reconnect = c->phase == CONN_OPEN && !c->finishing && !c->tunnel && c->http &&
                   c->http->awaiting_response;
  conn_handle_closed(h); /* the client handle is still open while phase is OPEN */
  if (reconnect) backend_connect(c);
}

void backend_close(struct conn *c) {
  if (c->backend_state == BACKEND_NONE || c->backend_state == BACKEND_CLOSING) return;
  c->backend_state = BACKEND_CLOSING;
  c->backend_reading = false;
  uv_close((uv_handle_t *)&c->backend, on_backend_closed);
}

/* The backend went away or broke: end the tunnel, or let HTTP decide what the client sees. */
static void backend_ended(struct conn *c, int err) {
  if (c->tunnel) {
    if (err == UV_EOF)
      conn_finish(c, "backend closed");
    else
      conn_close(c, uv_strerror(err));
    return;
  }
  backend_close(c);
  http_backend_eof(c);
}

static void on_backend_written(struct conn *c, size_t bytes, int status) {
  c->backend_inflight -= bytes;
  if (c->phase == CONN_CLOSING || status == UV_ECANCELED) return;
  if (status < 0) {
    log_debug("%s:%u: backend write failed: %s", c->client_ip, c->client_port,
              uv_strerror(status));
    backend_ended(c, status);
    return;
  }
  if (!backend_congested(c) && (c->plain || tls_has_input(&c->tls)))
    client_pump(c);
  else
    client_update_reading(c);
}

static void on_shutdown(uv_shutdown_t *req, int status) {}

void backend_flush(struct conn *c) {
  if (c->backend_state != BACKEND_UP) return;
  if (c->to_backend.len) {
    c->backend_inflight += c->to_backend.len;
    c->backend_inflight -=
        conn_write(c, backend_stream(c), bufchain_take(&c->to_backend), on_backend_written);
  }
  /* A tunnel whose client finished sending passes the half-close on. */
  if (c->tunnel && c->client_eof && !c->backend_shutdown && c->backend_state == BACKEND_UP) {
    c->backend_shutdown = true;
    uv_shutdown(&c->shutdown_req, backend_stream(c), on_shutdown);
  }
}

static void on_backend_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  struct conn *c = h->data;
  struct buf *b = buf_get(&c->worker->pool);
  *out = uv_buf_init((char *)b->data, BUF_SIZE);
}

static void on_backend_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *ub) {
  struct conn *c = s->data;
  struct buf *b = ub->base ? (struct buf *)(ub->base - offsetof(struct buf, data)) : NULL;
  if (nread <= 0) {
    if (b) buf_put(b);
    if (nread < 0 && c->phase == CONN_OPEN && c->backend_state == BACKEND_UP)
      backend_ended(c, (int)nread);
    return;
  }
  conn_touch(c);
  if (c->tunnel)
    client_send(c, b->data, (size_t)nread);
  else
    http_backend_data(c, b->data, (size_t)nread);
  buf_put(b);
  if (c->phase == CONN_CLOSING) return;
  client_flush(c);
  backend_update_reading(c);
  if (c->plain || tls_has_input(&c->tls)) client_pump(c); /* a paused request may go on */
}

void backend_update_reading(struct conn *c) {
  if (c->backend_state != BACKEND_UP) return;
  bool want = c->phase == CONN_OPEN && !c->finishing && !client_congested(c);
  if (want && !c->backend_reading) {
    if (uv_read_start(backend_stream(c), on_backend_alloc, on_backend_read) == 0)
      c->backend_reading = true;
  } else if (!want && c->backend_reading) {
    uv_read_stop(backend_stream(c));
    c->backend_reading = false;
  }
}

/* With backend.proxy_protocol, every backend connection starts with a PROXY header. */
static void send_proxy_header(struct conn *c) {
  struct buf *b = buf_get(&c->worker->pool);
  if (!backend_proxy_header(c, b->data, BUF_SIZE, &b->len)) {
    buf_put(b);
    return;
  }
  c->backend_inflight += b->len;
  c->backend_inflight -= conn_write(c, backend_stream(c), b, on_backend_written);
}

static void on_connect(uv_connect_t *req, int status) {
  struct conn *c = req->data;
  if (status == UV_ECANCELED || c->phase == CONN_CLOSING ||
      c->backend_state != BACKEND_CONNECTING)
    return;
  if (status < 0) {
    stat_add(&c->worker->stats, STAT_BACKEND_CONNECT_FAILURES, 1);
    worker_backend_failed(c->worker);
    log_warn("%s:%u: cannot connect to backend %s: %s", c->client_ip, c->client_port,
             c->gen->cfg->backend.addr.text, uv_strerror(status));
    backend_close(c);
    if (c->tunnel)
      conn_close(c, "backend unreachable");
    else
      http_fail(c, 502, "backend unreachable");
    return;
  }
  c->backend_state = BACKEND_UP;
  if (!c->gen->cfg->backend.addr.unix_path) uv_tcp_nodelay(&c->backend.tcp, 1);
  send_proxy_header(c);
  backend_update_reading(c);
  backend_flush(c);
}

void backend_connect(struct conn *c) {
  const struct config_addr *addr = &c->gen->cfg->backend.addr;
  uv_loop_t *loop = c->client.loop;
  c->connect_req.data = c;
  c->backend.tcp.data = c;
  int rc = 0;
  if (addr->unix_path) {
    uv_pipe_init(loop, &c->backend.pipe, 0);
    c->backend.pipe.data = c;
    uv_pipe_connect(&c->connect_req, &c->backend.pipe, addr->unix_path, on_connect);
  } else {
    uv_tcp_init(loop, &c->backend.tcp);
    c->backend.tcp.data = c;
    /* The worker's copy of the address follows DNS changes of a backend given by name. */
    const struct sockaddr *sa = c->gen == c->worker->gen ? worker_backend_addr(c->worker)
                                                         : (const struct sockaddr *)&addr->ss;
    rc = uv_tcp_connect(&c->connect_req, &c->backend.tcp, sa, on_connect);
  }
  c->open_handles++;
  c->backend_state = BACKEND_CONNECTING;
  c->connect_started_at = uv_now(loop);
  conn_arm_timer(c);
  if (rc) on_connect(&c->connect_req, rc);
}
