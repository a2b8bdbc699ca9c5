/* One request and its response (or a tunnel), between a codec above and a borrowed backend
 * connection below: the connection layer's middle object (session -> codec -> exchange ->
 * backend connection). What it decides and why is in exchange.h. */
#include "stapler/exchange.h"

#include <stdlib.h>
#include <string.h>

#include "stapler/backend_conn.h"
#include "stapler/backend_pool.h"
#include "stapler/generation.h"
#include "stapler/log.h"
#include "stapler/session.h"
#include "stapler/util.h"
#include "stapler/worker.h"

/* A retry re-sends the request from this copy; a bigger request is not retried. */
#define REPLAY_MAX (64 * 1024)

static const struct config *cfg_of(const struct exchange *e) { return e->session->gen->cfg; }
static struct worker *worker_of(const struct exchange *e) { return e->session->worker; }
static uint64_t now_of(const struct exchange *e) { return uv_now(&worker_of(e)->loop); }

static void log_problem(const struct exchange *e, enum log_level level, const char *what,
                        const char *detail) {
  log_msg(level, "%s:%u: %s%s%s", e->session->client_ip, e->session->client_port, what,
          detail ? ": " : "", detail ? detail : "");
}

/* Events for the owner, unless it has freed the exchange meanwhile (from inside an event). */
#define EMIT(e, ev, ...)                                            \
  do {                                                              \
    if (!(e)->doomed) (e)->events->ev((e)->owner, (e), ##__VA_ARGS__); \
  } while (0)

/* ---- the backend connection ----------------------------------------------------------------*/

static void release_backend(struct exchange *e) {
  struct backend_conn *bc = e->bc;
  if (!bc) return;
  e->bc = NULL;
  backend_conn_attach(bc, NULL, NULL);
  bool clean = e->backend_reusable && e->request == EXCHANGE_REQUEST_COMPLETE &&
               e->response == EXCHANGE_RESPONSE_COMPLETE && e->state != EXCHANGE_TUNNEL;
  if (clean) {
    bc->exchanges++;
    backend_pool_put(&worker_of(e)->backend_pool, bc);
  } else {
    backend_conn_close(bc); /* whatever it still queued dies with it */
  }
}

/* Everything ends here for an exchange that will get no (more) response. */
static void fail(struct exchange *e, int status, const char *why) {
  if (e->state == EXCHANGE_ENDED) return;
  e->state = EXCHANGE_ENDED;
  e->response = EXCHANGE_RESPONSE_FAILED;
  if (e->request == EXCHANGE_REQUEST_SENDING) e->request = EXCHANGE_REQUEST_ABANDONED;
  e->backend_reusable = false;
  release_backend(e);
  bufchain_clear(&e->replay);
  EMIT(e, failed, status, why);
}

static void maybe_end(struct exchange *e) {
  if (e->state != EXCHANGE_FORWARDING || e->response != EXCHANGE_RESPONSE_COMPLETE ||
      e->request == EXCHANGE_REQUEST_SENDING)
    return;
  e->state = EXCHANGE_ENDED;
  release_backend(e);
}

static void send_bytes(struct exchange *e, const uint8_t *data, size_t len) {
  if (!e->bc || len == 0) return;
  e->activity_at = now_of(e);
  if (e->replay_ok) {
    if (e->replay.len + len <= REPLAY_MAX) {
      bufchain_append(&e->replay, &worker_of(e)->pool, data, len);
    } else {
      e->replay_ok = false;
      bufchain_clear(&e->replay);
    }
  }
  backend_conn_write(e->bc, data, len);
}

static void emit_to_backend(void *ctx, const uint8_t *data, size_t len) {
  send_bytes(ctx, data, len);
}

static const struct backend_conn_events kBackendEvents;

static bool out_of_fds(int err) { return err == UV_EMFILE || err == UV_ENFILE; }

/* No connection to the backend. Running out of descriptors is stapler's state, not the
 * backend's fault: it is counted and said apart, and the backend's name is not looked up
 * again for it. */
static void connect_failed(struct exchange *e, int err) {
  struct worker *w = worker_of(e);
  if (out_of_fds(err)) {
    stat_add(&w->stats, STAT_BACKEND_NO_FD, 1);
    log_msg(LOG_WARN, "%s:%u: cannot open a backend connection: no file descriptor left "
            "(open-file limit %llu reached; see limits.max_connections)", e->session->client_ip,
            e->session->client_port, (unsigned long long)util_fd_limit());
    fail(e, 502, "no file descriptor for a backend connection");
    return;
  }
  stat_add(&w->stats, STAT_BACKEND_CONNECT_FAILURES, 1);
  worker_backend_failed(w);
  log_msg(LOG_WARN, "%s:%u: cannot connect to backend %s: %s", e->session->client_ip,
          e->session->client_port, cfg_of(e)->backend.addr.text, uv_strerror(err));
  fail(e, 502, "backend unreachable");
}

/* A connection for this exchange: an idle one from the pool unless `fresh`. False (after
 * `failed`) when none could be opened. */
static bool acquire(struct exchange *e, bool fresh, bool tunnel) {
  struct session *s = e->session;
  struct worker *w = s->worker;
  const struct config_backend *b = &cfg_of(e)->backend;
  /* The worker's copy of the address follows DNS changes of a backend given by name. */
  const struct sockaddr *addr = s->gen == w->gen ? worker_backend_addr(w)
                                                 : (const struct sockaddr *)&b->addr.ss;
  const void *private_to = b->proxy_protocol != PROXY_PROTOCOL_OFF ? s : NULL;
  struct backend_conn *bc = NULL;
  if (!fresh && !tunnel)
    bc = backend_pool_take(&w->backend_pool, addr, b->addr.unix_path, private_to);
  if (!bc) {
    uint8_t header[BUF_SIZE < 1024 ? BUF_SIZE : 1024];
    size_t header_len = 0;
    bool with_header = session_backend_proxy_header(s, header, sizeof header, &header_len);
    int err = 0;
    bc = backend_conn_connect(w, addr, b->addr.unix_path, with_header ? header : NULL,
                              header_len, private_to, &err);
    if (!bc) {
      connect_failed(e, err);
      return false;
    }
  }
  e->bc = bc;
  e->backend_sent_anything = false;
  backend_conn_attach(bc, &kBackendEvents, e);
  backend_conn_set_reading(bc, !e->response_paused);
  /* A retry needs the request again: keep a copy while it is small and safe to repeat. */
  e->replay_ok = bc->exchanges > 0 && !e->retried && e->req && http_head_idempotent(e->req);
  return true;
}

/* ---- retrying a request that met a closing keep-alive connection --------------------------*/

static bool can_retry(const struct exchange *e) {
  return e->replay_ok && !e->retried && !e->backend_sent_anything &&
         e->response == EXCHANGE_RESPONSE_WAITING && e->state == EXCHANGE_FORWARDING;
}

static void retry(struct exchange *e) {
  log_debug("%s:%u: backend closed a kept-alive connection as the request arrived: sending it "
            "again on a new one", e->session->client_ip, e->session->client_port);
  struct buf *copy = bufchain_take(&e->replay);
  backend_conn_attach(e->bc, NULL, NULL);
  backend_conn_close(e->bc);
  e->bc = NULL;
  e->retried = true;
  if (!acquire(e, true, false)) {
    buf_put_chain(copy);
    return;
  }
  e->replay_ok = false;
  for (struct buf *b = copy; b; b = b->next) backend_conn_write(e->bc, b->data + b->off, b->len - b->off);
  buf_put_chain(copy);
}

/* ---- the response ----------------------------------------------------------------------------*/

static void on_response_head(void *ctx) {
  struct exchange *e = ctx;
  const struct http_head *res = &e->reader.head;
  if (res->status == 101) {
    if (!e->req || !e->req->upgrade_len || !http1_upgrade_accepted(e->req, res))
      return; /* refused after the feed (see on_backend_data) */
    e->state = EXCHANGE_TUNNEL;
    e->request = EXCHANGE_REQUEST_SENDING; /* the client's side of the tunnel is open */
    e->response = EXCHANGE_RESPONSE_BODY;
    e->record.status = 101;
    bufchain_clear(&e->replay);
    e->replay_ok = false;
  } else if (res->status >= 200) {
    e->response = EXCHANGE_RESPONSE_BODY;
    e->record.status = res->status;
  }
  EMIT(e, response_head, res);
}

static void on_response_body(void *ctx, const uint8_t *data, size_t len) {
  struct exchange *e = ctx;
  if (e->state != EXCHANGE_ENDED) EMIT(e, response_data, data, len);
}

static void on_response_end(void *ctx) {}

static const struct http1_reader_events kResponseEvents = {on_response_head, on_response_body,
                                                           on_response_end};

/* A final response ended; `extra` bytes followed it. */
static void response_complete(struct exchange *e, size_t extra) {
  const struct http_head *res = &e->reader.head;
  e->response = EXCHANGE_RESPONSE_COMPLETE;
  /* Reuse only what is unambiguous: a keep-alive response framed by length or chunks, with
   * nothing after it, and not a 204 that announced a body it must not have. */
  bool announced = http_head_count(res, "content-length", NULL) ||
                   http_head_count(res, "transfer-encoding", NULL);
  e->backend_reusable = http1_reader_keep_alive(&e->reader) && e->backend_minor == 1 &&
                        extra == 0 && !(res->status == 204 && announced);
  if (extra)
    log_debug("%s:%u: backend sent %zu byte(s) after a complete response: its connection is "
              "closed", e->session->client_ip, e->session->client_port, extra);
  bufchain_clear(&e->replay);
  e->replay_ok = false;
  const struct http_head *trailers =
      e->reader.in_trailers && e->reader.trailer_from < res->field_count ? res : NULL;
  EMIT(e, response_end, trailers, e->reader.trailer_from);
  maybe_end(e);
}

static void feed_response(struct exchange *e, const uint8_t *data, size_t len) {
  while (len > 0 && e->state == EXCHANGE_FORWARDING &&
         e->response != EXCHANGE_RESPONSE_COMPLETE) {
    size_t used = http1_reader_feed(&e->reader, data, len);
    data += used;
    len -= used;
    if (e->reader.state == HTTP1_READER_FAILED) {
      stat_add(&worker_of(e)->stats, STAT_BACKEND_BROKEN, 1);
      log_problem(e, LOG_WARN, "backend sent a malformed response", e->reader.error);
      fail(e, 502, e->reader.error);
      return;
    }
    if (e->reader.state != HTTP1_READER_DONE) continue;
    int status = e->reader.head.status;
    if (status == 101) {
      if (e->state != EXCHANGE_TUNNEL) {
        stat_add(&worker_of(e)->stats, STAT_BACKEND_BROKEN, 1);
        log_problem(e, LOG_WARN, "backend switched protocols", "to one the client did not ask for");
        fail(e, 502, "101 for an upgrade the client did not ask for");
        return;
      }
      if (len) EMIT(e, response_data, data, len); /* the new protocol's first bytes */
      return;
    }
    if (status < 200) { /* interim: the final response follows */
      http1_reader_next(&e->reader);
      continue;
    }
    response_complete(e, len);
    return;
  }
  if (len > 0 && e->state == EXCHANGE_FORWARDING && e->response == EXCHANGE_RESPONSE_COMPLETE) {
    /* More after the response, before the request ended: the connection is spoiled. */
    e->backend_reusable = false;
  } else if (len > 0 && e->state == EXCHANGE_TUNNEL) {
    EMIT(e, response_data, data, len);
  }
}

/* ---- backend events ------------------------------------------------------------------------*/

static void exchange_destroy(struct exchange *e);

static void enter(struct exchange *e) { e->busy++; }
static void leave(struct exchange *e) {
  if (--e->busy == 0 && e->doomed) exchange_destroy(e);
}

/* The request bytes queued while connecting are on their way now. */
static void on_backend_connected(void *owner) {
  struct exchange *e = owner;
  if (e->req) e->record.forwarded = true;
}

static void on_backend_data(void *owner, const uint8_t *data, size_t len) {
  struct exchange *e = owner;
  enter(e);
  e->activity_at = now_of(e);
  e->backend_sent_anything = true;
  if (e->state == EXCHANGE_TUNNEL)
    EMIT(e, response_data, data, len);
  else
    feed_response(e, data, len);
  leave(e);
}

/* The backend ended its side (EOF) or the connection broke (`err`). */
static void backend_gone(struct exchange *e, int err) {
  if (e->state == EXCHANGE_TUNNEL) {
    if (err) {
      fail(e, 0, uv_strerror(err));
    } else {
      e->response = EXCHANGE_RESPONSE_COMPLETE;
      EMIT(e, response_end, NULL, 0);
    }
    return;
  }
  if (e->response == EXCHANGE_RESPONSE_WAITING && can_retry(e)) {
    retry(e);
    return;
  }
  if (e->response != EXCHANGE_RESPONSE_COMPLETE && !err && http1_reader_eof(&e->reader)) {
    response_complete(e, 0); /* a body delimited by the connection's end */
  } else if (e->response == EXCHANGE_RESPONSE_WAITING) {
    stat_add(&worker_of(e)->stats, STAT_BACKEND_BROKEN, 1);
    const char *why = err ? "backend reset the connection before responding"
                          : "backend closed the connection without responding";
    log_problem(e, LOG_WARN, why, NULL);
    fail(e, 502, why);
    return;
  } else if (e->response == EXCHANGE_RESPONSE_BODY) {
    stat_add(&worker_of(e)->stats, STAT_BACKEND_BROKEN, 1);
    log_problem(e, LOG_WARN, "backend broke off its response",
                err ? uv_strerror(err) : "it closed the connection");
    fail(e, 0, "backend broke off its response");
    return;
  }
  /* The response is complete; the request may still be arriving. Its rest is dropped. */
  e->backend_reusable = false;
  if (e->request == EXCHANGE_REQUEST_SENDING) e->request = EXCHANGE_REQUEST_ABANDONED;
  struct backend_conn *bc = e->bc;
  e->bc = NULL;
  if (bc) backend_conn_close(bc);
  maybe_end(e);
}

static void on_backend_eof(void *owner) {
  struct exchange *e = owner;
  enter(e);
  backend_gone(e, 0);
  leave(e);
}

static void on_backend_error(void *owner, int err, bool connecting) {
  struct exchange *e = owner;
  enter(e);
  if (connecting) {
    connect_failed(e, err);
  } else {
    backend_gone(e, err);
  }
  leave(e);
}

static void on_backend_writable(void *owner) {
  struct exchange *e = owner;
  enter(e);
  if (e->state != EXCHANGE_ENDED) EMIT(e, writable);
  leave(e);
}

static const struct backend_conn_events kBackendEvents = {
    on_backend_connected, on_backend_data, on_backend_eof, on_backend_error,
    on_backend_writable};

/* ---- the request ---------------------------------------------------------------------------*/

struct exchange *exchange_new(struct session *s, const struct exchange_events *events,
                              void *owner) {
  struct exchange *e = xcalloc(1, sizeof *e);
  e->session = s;
  e->events = events;
  e->owner = owner;
  e->record.started_at = e->activity_at = uv_now(&s->worker->loop);
  http1_reader_init(&e->reader, HTTP_RESPONSE, &kResponseEvents, e,
                    s->gen->cfg->limits.max_header_bytes);
  return e;
}

void exchange_start(struct exchange *e, const struct http_head *req, int minor) {
  e->req = req;
  e->backend_minor = minor;
  e->reader.response_to_head = http_head_method_is(req, "HEAD");
  enter(e);
  if (acquire(e, false, false)) {
    const struct session *s = e->session;
    bool forwarded = cfg_of(e)->backend.forwarded_headers;
    struct http1_writer w = {.len = 0, .emit = emit_to_backend, .ctx = e};
    http1_write_request(&w, req, minor, forwarded ? s->forwarding : NULL,
                        forwarded ? s->forwarding_len : 0);
    e->record.forwarded = e->bc && e->bc->state == BACKEND_CONN_OPEN;
  }
  leave(e);
}

void exchange_start_tunnel(struct exchange *e) {
  e->state = EXCHANGE_TUNNEL;
  e->response = EXCHANGE_RESPONSE_BODY;
  enter(e);
  acquire(e, true, true);
  leave(e);
}

void exchange_request_data(struct exchange *e, const uint8_t *data, size_t len) {
  if (!e->bc || e->request != EXCHANGE_REQUEST_SENDING || len == 0) return;
  enter(e);
  if (e->state == EXCHANGE_FORWARDING) {
    struct http1_writer w = {.len = 0, .emit = emit_to_backend, .ctx = e};
    http1_write_body(&w, e->req->framing, data, len);
  } else {
    send_bytes(e, data, len);
  }
  leave(e);
}

void exchange_request_end(struct exchange *e, const struct http_head *trailers, size_t from) {
  if (e->request != EXCHANGE_REQUEST_SENDING) return;
  enter(e);
  if (e->state == EXCHANGE_TUNNEL) {
    e->request = EXCHANGE_REQUEST_COMPLETE;
    if (e->bc) backend_conn_shutdown(e->bc); /* the client's half-close, passed on */
  } else {
    if (e->bc) {
      struct http1_writer w = {.len = 0, .emit = emit_to_backend, .ctx = e};
      http1_write_end(&w, e->req->framing, trailers, from);
    }
    e->request = EXCHANGE_REQUEST_COMPLETE;
    maybe_end(e);
  }
  leave(e);
}

bool exchange_congested(const struct exchange *e) {
  return e->bc && backend_conn_congested(e->bc);
}

void exchange_pause_response(struct exchange *e, bool paused) {
  e->response_paused = paused;
  if (e->bc) backend_conn_set_reading(e->bc, !paused);
}

bool exchange_done(const struct exchange *e) {
  return e->state == EXCHANGE_ENDED ||
         (e->state == EXCHANGE_TUNNEL && e->request == EXCHANGE_REQUEST_COMPLETE &&
          e->response == EXCHANGE_RESPONSE_COMPLETE);
}

/* ---- timeouts --------------------------------------------------------------------------------*/

uint64_t exchange_deadline(const struct exchange *e) {
  if (!e->bc || e->state == EXCHANGE_ENDED) return UINT64_MAX;
  const struct config *cfg = cfg_of(e);
  if (e->bc->state == BACKEND_CONN_CONNECTING)
    return e->bc->connect_started_at + cfg->backend.connect_timeout_ms;
  if (e->state == EXCHANGE_TUNNEL) return UINT64_MAX; /* the session's idle timeout rules */
  if (e->response == EXCHANGE_RESPONSE_WAITING || e->response == EXCHANGE_RESPONSE_BODY)
    return e->activity_at + cfg->timeouts.idle_ms;
  return UINT64_MAX;
}

void exchange_expire(struct exchange *e, uint64_t now) {
  if (now < exchange_deadline(e)) return;
  struct worker *w = worker_of(e);
  enter(e);
  if (e->bc->state == BACKEND_CONN_CONNECTING) {
    stat_add(&w->stats, STAT_BACKEND_CONNECT_TIMEOUTS, 1);
    worker_backend_failed(w);
    log_msg(LOG_WARN, "%s:%u: backend %s did not accept the connection within "
            "backend.connect_timeout", e->session->client_ip, e->session->client_port,
            cfg_of(e)->backend.addr.text);
    fail(e, 504, "backend connect timeout");
  } else if (e->response == EXCHANGE_RESPONSE_WAITING) {
    stat_add(&w->stats, STAT_BACKEND_RESPONSE_TIMEOUTS, 1);
    log_problem(e, LOG_WARN, "backend sent no response within timeouts.idle", NULL);
    fail(e, 504, "backend response timeout");
  } else {
    stat_add(&w->stats, STAT_BACKEND_RESPONSE_TIMEOUTS, 1);
    log_problem(e, LOG_WARN, "backend stalled in the middle of a response for timeouts.idle",
                NULL);
    fail(e, 0, "backend response timeout");
  }
  leave(e);
}

/* ---- the end -----------------------------------------------------------------------------*/

static void exchange_destroy(struct exchange *e) {
  release_backend(e);
  bufchain_clear(&e->replay);
  http1_reader_free(&e->reader);
  free(e);
}

void exchange_free(struct exchange *e) {
  if (!e) return;
  if (e->busy) {
    e->doomed = true; /* nothing more goes up; freed when the event returns */
    return;
  }
  exchange_destroy(e);
}
