/* Connection lifecycle: accept, the single timer, and the two ways to end. */
#include "stapler/conn.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/access_log.h"
#include "stapler/generation.h"
#include "stapler/listener.h"
#include "stapler/log.h"
#include "stapler/server.h"
#include "stapler/util.h"
#include "stapler/worker.h"

static void free_conn(struct conn *c) {
  struct worker *w = c->worker;
  if (c->prev)
    c->prev->next = c->next;
  else
    w->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  w->conn_count--;
  access_log_tunnel(c);
  http_free(c); /* may log, so while the TLS session still exists */
  atomic_fetch_sub(&w->server->open_connections, 1);
  tls_session_free(&c->tls);
  if (c->plain) buf_put(c->plain);
  if (c->proxy_header) buf_put(c->proxy_header);
  bufchain_clear(&c->to_backend);
  generation_unref(c->gen);
  free(c);
  worker_conn_closed(w);
}

void conn_handle_closed(uv_handle_t *h) {
  struct conn *c = h->data;
  if (--c->open_handles == 0) free_conn(c);
}

void conn_close(struct conn *c, const char *why) {
  if (c->phase == CONN_CLOSING) return;
  log_debug("%s:%u: closing: %s", c->client_ip, c->client_port, why);
  c->phase = CONN_CLOSING;
  uv_close((uv_handle_t *)&c->client, conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
  if (c->backend_state == BACKEND_CONNECTING || c->backend_state == BACKEND_UP)
    backend_close(c);
}

void conn_finish(struct conn *c, const char *why) {
  if (c->phase == CONN_CLOSING || c->finishing) return;
  log_debug("%s:%u: finishing: %s", c->client_ip, c->client_port, why);
  c->finishing = true;
  if (c->phase == CONN_OPEN) {
    SSL_shutdown(c->tls.ssl); /* queues close_notify */
    ERR_clear_error();
  }
  if (c->backend_state == BACKEND_CONNECTING || c->backend_state == BACKEND_UP) backend_close(c);
  client_flush(c);
  client_update_reading(c);
  if (c->client_inflight == 0) conn_close(c, why);
}

void conn_touch(struct conn *c) { c->last_activity = uv_now(c->client.loop); }

/* ---- timeouts --------------------------------------------------------------------------------*/

enum timeout_kind { TIMEOUT_HANDSHAKE, TIMEOUT_HEADER, TIMEOUT_CONNECT, TIMEOUT_IDLE };

static uint64_t deadline(const struct conn *c, enum timeout_kind *kind) {
  const struct config_timeouts *t = &c->gen->cfg->timeouts;
  if (conn_before_tls(c)) {
    *kind = TIMEOUT_HANDSHAKE;
    return c->accepted_at + t->handshake_ms;
  }
  *kind = TIMEOUT_IDLE;
  uint64_t d = c->last_activity + t->idle_ms;
  if (c->http && !c->tunnel && c->http->req_state == HTTP1_REQ_HEADERS &&
      c->header_started_at + t->request_header_ms < d) {
    *kind = TIMEOUT_HEADER;
    d = c->header_started_at + t->request_header_ms;
  }
  uint64_t connect_by = c->connect_started_at + c->gen->cfg->backend.connect_timeout_ms;
  if (c->backend_state == BACKEND_CONNECTING && connect_by < d) {
    *kind = TIMEOUT_CONNECT;
    d = connect_by;
  }
  return d;
}

static void expire(struct conn *c, enum timeout_kind kind) {
  struct stats *s = &c->worker->stats;
  switch (kind) {
  case TIMEOUT_HANDSHAKE:
    stat_add(s, c->phase == CONN_PROXY_HEADER ? STAT_PROXY_HEADER_FAILURES
                                              : STAT_HANDSHAKE_FAIL_TIMEOUT, 1);
    log_info("%s:%u: %s not completed within timeouts.handshake", c->client_ip, c->client_port,
             c->phase == CONN_PROXY_HEADER ? "PROXY header" : "TLS handshake");
    conn_close(c, "handshake timeout");
    break;
  case TIMEOUT_CONNECT:
    stat_add(s, STAT_BACKEND_CONNECT_TIMEOUTS, 1);
    worker_backend_failed(c->worker);
    log_warn("%s:%u: backend %s did not accept the connection within backend.connect_timeout",
             c->client_ip, c->client_port, c->gen->cfg->backend.addr.text);
    if (c->http && !c->tunnel)
      http_fail(c, 504, "backend connect timeout");
    else
      conn_close(c, "backend connect timeout");
    break;
  case TIMEOUT_HEADER:
    log_info("%s:%u: request headers not received within timeouts.request_header", c->client_ip,
             c->client_port);
    http_fail(c, 408, "request header timeout");
    break;
  case TIMEOUT_IDLE:
    if (c->http && !c->tunnel && c->http->awaiting_response && !c->http->response_started) {
      stat_add(s, STAT_BACKEND_RESPONSE_TIMEOUTS, 1);
      log_warn("%s:%u: backend sent no response within timeouts.idle", c->client_ip,
               c->client_port);
      http_fail(c, 504, "backend response timeout");
    } else {
      conn_finish(c, "idle timeout");
    }
    break;
  }
}

static void on_timer(uv_timer_t *timer) {
  struct conn *c = timer->data;
  c->timer_due = 0;
  if (c->phase == CONN_CLOSING) return;
  enum timeout_kind kind;
  uint64_t d = deadline(c, &kind);
  if (uv_now(timer->loop) >= d) {
    if (c->finishing)
      conn_close(c, "client did not take the last bytes");
    else
      expire(c, kind);
    return;
  }
  conn_arm_timer(c);
}

void conn_arm_timer(struct conn *c) {
  if (c->phase == CONN_CLOSING) return;
  enum timeout_kind kind;
  uint64_t d = deadline(c, &kind);
  if (c->timer_due && c->timer_due <= d) return; /* fires first and re-evaluates */
  uint64_t now = uv_now(c->timer.loop);
  uv_timer_start(&c->timer, on_timer, d > now ? d - now : 0, 0);
  c->timer_due = d;
}

/* ---- accept and drain ------------------------------------------------------------------------*/

static void close_and_free(uv_handle_t *h) { free(h); }

static void reject(struct worker *w, uv_stream_t *server) {
  uv_tcp_t *t = xmalloc(sizeof *t);
  uv_tcp_init(&w->loop, t);
  if (uv_accept(server, (uv_stream_t *)t) == 0) stat_add(&w->stats, STAT_REJECTED, 1);
  uv_close((uv_handle_t *)t, close_and_free);
}

static void read_addresses(struct conn *c) {
  int len = sizeof c->local_addr;
  uv_tcp_getsockname(&c->client, (struct sockaddr *)&c->local_addr, &len);
  struct sockaddr_storage peer;
  len = sizeof peer;
  strcpy(c->client_ip, "unknown");
  if (uv_tcp_getpeername(&c->client, (struct sockaddr *)&peer, &len) == 0)
    client_set_address(c, (struct sockaddr *)&peer);
}

void conn_accept(struct worker *w, struct listener *l) {
  struct server *srv = w->server;
  uv_stream_t *server = (uv_stream_t *)&l->handle;
  if (w->draining ||
      atomic_load(&srv->open_connections) >= w->gen->cfg->limits.max_connections) {
    reject(w, server);
    return;
  }
  struct conn *c = xcalloc(1, sizeof *c);
  c->worker = w;
  c->gen = generation_ref(w->gen);
  c->local_port = l->port;
  uv_tcp_init(&w->loop, &c->client);
  uv_timer_init(&w->loop, &c->timer);
  c->client.data = c->timer.data = c;
  c->open_handles = 2;
  c->next = w->conns;
  if (w->conns) w->conns->prev = c;
  w->conns = c;
  w->conn_count++;
  atomic_fetch_add(&srv->open_connections, 1);
  c->accepted_at = c->last_activity = uv_now(&w->loop);
  c->phase = CONN_HANDSHAKE;
  if (uv_accept(server, (uv_stream_t *)&c->client) != 0 ||
      !tls_session_init(&c->tls, c->gen, &w->pool)) {
    conn_close(c, "accept failed");
    return;
  }
  stat_add(&w->stats, STAT_ACCEPTED, 1);
  uv_tcp_nodelay(&c->client, 1);
  read_addresses(c);
  c->phase = l->proxy_protocol ? CONN_PROXY_HEADER : CONN_HANDSHAKE;
  conn_arm_timer(c);
  client_start(c);
}

void conn_drain(struct conn *c) {
  c->draining = true;
  if (conn_before_tls(c)) {
    conn_close(c, "shutting down");
  } else if (c->phase == CONN_OPEN && c->http && !c->tunnel && http1_idle(c->http) &&
             !c->plain) {
    conn_finish(c, "shutting down");
  }
}
