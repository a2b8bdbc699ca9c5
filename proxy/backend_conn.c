/* One backend connection, the connection layer's bottom object: it reports connect, data,
 * end and errors up to whichever exchange or tunnel holds it, and drops what it queued when
 * it closes (backend_conn.h). */
#include "stapler/backend_conn.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/backend_pool.h"
#include "stapler/log.h"
#include "stapler/sockwrite.h"
#include "stapler/util.h"
#include "stapler/worker.h"

size_t backend_conn_pending(const struct backend_conn *bc) { return bc->queue.len + bc->inflight; }

bool backend_conn_congested(const struct backend_conn *bc) {
  return backend_conn_pending(bc) > BACKEND_HIGH_WATER;
}

static void on_closed(uv_handle_t *h) {
  struct backend_conn *bc = h->data;
  bufchain_clear(&bc->queue);
  free(bc->unix_path);
  free(bc);
}

void backend_conn_close(struct backend_conn *bc) {
  if (bc->state == BACKEND_CONN_CLOSED) return;
  if (bc->state == BACKEND_CONN_IDLE) backend_pool_remove(&bc->worker->backend_pool, bc);
  bc->state = BACKEND_CONN_CLOSED;
  bc->events = NULL;
  bc->owner = NULL;
  bufchain_clear(&bc->queue); /* the bytes die with the connection */
  uv_close((uv_handle_t *)&bc->handle, on_closed);
}

void backend_conn_attach(struct backend_conn *bc, const struct backend_conn_events *events,
                         void *owner) {
  bc->events = events;
  bc->owner = owner;
}

/* An event for the owner; an idle connection has none and closes on anything. */
#define NOTIFY(bc, ev, ...)                                                        \
  do {                                                                             \
    if ((bc)->events && (bc)->events->ev) (bc)->events->ev((bc)->owner, ##__VA_ARGS__); \
  } while (0)

static void fail(struct backend_conn *bc, int err, bool connecting) {
  if (bc->state == BACKEND_CONN_IDLE || !bc->events) {
    backend_conn_close(bc);
    return;
  }
  NOTIFY(bc, error, err, connecting);
}

/* ---- writing --------------------------------------------------------------------------------*/

static void after_write(struct backend_conn *bc);

static void on_written(void *owner, size_t bytes, int status) {
  struct backend_conn *bc = owner;
  bc->inflight -= bytes;
  if (bc->state == BACKEND_CONN_CLOSED || status == UV_ECANCELED) return;
  if (status < 0) {
    fail(bc, status, false);
    return;
  }
  after_write(bc);
}

static void on_shutdown(uv_shutdown_t *req, int status) {}

/* Hands what is queued to libuv; sends a wanted FIN once everything is out. */
static void flush(struct backend_conn *bc) {
  if (bc->state != BACKEND_CONN_OPEN && bc->state != BACKEND_CONN_IDLE) return;
  if (bc->queue.len) {
    bc->inflight += bc->queue.len;
    bc->inflight -= sockwrite(bc->worker, &bc->handle.stream, bufchain_take(&bc->queue),
                              on_written, bc);
  }
  if (bc->shutdown_wanted && !bc->shutdown_sent && bc->state == BACKEND_CONN_OPEN) {
    bc->shutdown_sent = true;
    uv_shutdown(&bc->shutdown_req, &bc->handle.stream, on_shutdown);
  }
}

static void after_write(struct backend_conn *bc) {
  if (bc->congested && backend_conn_pending(bc) < BACKEND_LOW_WATER) {
    bc->congested = false;
    NOTIFY(bc, writable);
  }
}

void backend_conn_write(struct backend_conn *bc, const uint8_t *data, size_t len) {
  if (bc->state == BACKEND_CONN_CLOSED || bc->shutdown_wanted || len == 0) return;
  bufchain_append(&bc->queue, &bc->worker->pool, data, len);
  flush(bc);
  if (backend_conn_congested(bc)) bc->congested = true;
}

void backend_conn_write_buf(struct backend_conn *bc, struct buf *b) {
  if (bc->state == BACKEND_CONN_CLOSED || bc->shutdown_wanted || b->off == b->len) {
    buf_put(b);
    return;
  }
  bufchain_push(&bc->queue, b);
  flush(bc);
  if (backend_conn_congested(bc)) bc->congested = true;
}

void backend_conn_shutdown(struct backend_conn *bc) {
  if (bc->state == BACKEND_CONN_CLOSED) return;
  bc->shutdown_wanted = true;
  flush(bc);
}

/* ---- reading --------------------------------------------------------------------------------*/

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  struct backend_conn *bc = h->data;
  struct buf *b = buf_get(&bc->worker->pool);
  *out = uv_buf_init((char *)b->data, BUF_SIZE);
}

static void update_reading(struct backend_conn *bc);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *ub) {
  struct backend_conn *bc = s->data;
  struct buf *b = ub->base ? (struct buf *)(ub->base - offsetof(struct buf, data)) : NULL;
  if (nread <= 0) {
    if (b) buf_put(b);
    if (nread == 0 || bc->state == BACKEND_CONN_CLOSED) return;
    if (nread == UV_EOF) {
      bc->eof = true;
      update_reading(bc);
      if (bc->state == BACKEND_CONN_IDLE || !bc->events)
        backend_conn_close(bc); /* the backend ended an idle keep-alive connection */
      else
        NOTIFY(bc, eof);
    } else {
      fail(bc, (int)nread, false);
    }
    return;
  }
  if (bc->state == BACKEND_CONN_IDLE || !bc->events) {
    /* Nothing was asked: whatever this is, the connection cannot carry another exchange. */
    log_debug("backend sent %zd byte(s) on an idle connection: closing it", nread);
    buf_put(b);
    backend_conn_close(bc);
    return;
  }
  NOTIFY(bc, data, b->data, (size_t)nread);
  buf_put(b);
}

static void update_reading(struct backend_conn *bc) {
  bool want = !bc->eof && (bc->state == BACKEND_CONN_IDLE ||
                           (bc->state == BACKEND_CONN_OPEN && bc->want_read));
  if (want && !bc->reading) {
    if (uv_read_start(&bc->handle.stream, on_alloc, on_read) == 0) bc->reading = true;
  } else if (!want && bc->reading) {
    uv_read_stop(&bc->handle.stream);
    bc->reading = false;
  }
}

void backend_conn_set_reading(struct backend_conn *bc, bool on) {
  if (bc->state == BACKEND_CONN_CLOSED) return;
  bc->want_read = on;
  update_reading(bc);
}

void backend_conn_set_idle(struct backend_conn *bc, bool idle) {
  if (bc->state == BACKEND_CONN_CLOSED) return;
  bc->state = idle ? BACKEND_CONN_IDLE : BACKEND_CONN_OPEN;
  bc->events = NULL;
  bc->owner = NULL;
  /* An idle connection reads (to see the backend close it); the exchange that takes it wants
   * the response next, so reading stays on: stopping and restarting costs two epoll_ctl. */
  bc->want_read = true;
  update_reading(bc);
}

/* ---- connecting -----------------------------------------------------------------------------*/

static void on_connect(uv_connect_t *req, int status) {
  struct backend_conn *bc = req->data;
  if (status == UV_ECANCELED || bc->state != BACKEND_CONN_CONNECTING) return;
  if (status < 0) {
    fail(bc, status, true);
    return;
  }
  bc->state = BACKEND_CONN_OPEN;
  if (!bc->unix_path) uv_tcp_nodelay(&bc->handle.tcp, 1);
  update_reading(bc);
  flush(bc);
  NOTIFY(bc, connected);
  /* What was queued while connecting may have gone out whole in flush(), and a write that
   * completes at once has no callback: an owner that stopped for congestion hears it here. */
  if (bc->state == BACKEND_CONN_OPEN) after_write(bc);
}

struct backend_conn *backend_conn_connect(struct worker *w, const struct sockaddr *addr,
                                          const char *unix_path, const uint8_t *proxy_header,
                                          size_t proxy_header_len, const void *private_to,
                                          int *err) {
  struct backend_conn *bc = xcalloc(1, sizeof *bc);
  bc->worker = w;
  bc->state = BACKEND_CONN_CONNECTING;
  bc->private_to = private_to;
  bc->connect_started_at = uv_now(&w->loop);
  bc->connect_req.data = bc;
  int rc;
  if (unix_path) {
    bc->unix_path = xstrdup(unix_path);
    uv_pipe_init(&w->loop, &bc->handle.pipe, 0);
    bc->handle.pipe.data = bc;
    uv_pipe_connect(&bc->connect_req, &bc->handle.pipe, unix_path, on_connect);
    rc = 0; /* libuv reports every failure through on_connect */
  } else {
    memcpy(&bc->addr, addr,
           addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    uv_tcp_init(&w->loop, &bc->handle.tcp);
    bc->handle.tcp.data = bc;
    rc = uv_tcp_connect(&bc->connect_req, &bc->handle.tcp, addr, on_connect);
  }
  if (rc) { /* no socket (EMFILE, ...): nothing to report later */
    *err = rc;
    bc->state = BACKEND_CONN_CLOSED;
    uv_close((uv_handle_t *)&bc->handle, on_closed);
    return NULL;
  }
  if (proxy_header && proxy_header_len)
    bufchain_append(&bc->queue, &w->pool, proxy_header, proxy_header_len);
  return bc;
}
