/* HTTP/1.1 toward the client: requests read with an http1 reader, one exchange at a time
 * (pipelined requests wait in the session's input until the exchange before them is over),
 * responses written back in HTTP/1.1 framing, and after a 101 the bytes of both sides passed
 * through the same exchange as a tunnel.
 *
 * A request whose backend went away before the request ended (the backend answered early and
 * closed) is read to its end and dropped when little of it is left, as nginx's lingering
 * discard does, so the connection lives on; otherwise the response says Connection: close and
 * the connection ends after it. */
#include <stdlib.h>
#include <string.h>

#include "stapler/access_log.h"
#include "stapler/codec.h"
#include "stapler/exchange.h"
#include "stapler/generation.h"
#include "stapler/http1.h"
#include "stapler/log.h"
#include "stapler/session.h"
#include "stapler/util.h"
#include "stapler/worker.h"

/* A request body left unread when its response is complete: up to this much is read and
 * dropped to keep the connection; more ends the connection after the response. */
#define DISCARD_MAX (64 * 1024)

enum h1_state {
  H1_IDLE,     /* waiting for a request: the first, or the next on a kept-alive connection */
  H1_HEAD,     /* reading a request head */
  H1_EXCHANGE, /* a request is being forwarded and/or its response returned */
  H1_TUNNEL,   /* after a 101: bytes pass both ways */
  H1_CLOSING,  /* the session is finishing: nothing more is read */
};

struct codec_h1 {
  struct codec base;
  enum h1_state state;
  struct http1_reader reader;
  struct exchange *exchange;
  unsigned requests;      /* heads read */
  uint64_t head_started_at;
  uint64_t request_bytes; /* of the current request, as received */
  int client_minor;       /* the current request's HTTP/1.x version */
  bool request_read;      /* the client sent all of the current request */
  bool head_sent;         /* a final (or 101) response head went to the client */
  bool close_after;       /* end the connection after this exchange */
  bool response_done;     /* the current exchange's response is complete */
  enum http_framing out_framing; /* how the response body goes to the client */
};

static struct codec_h1 *h1_of(struct codec *c) { return (struct codec_h1 *)c; }
static struct session *session_of(struct codec_h1 *h) { return h->base.session; }
static const struct config *cfg_of(struct codec_h1 *h) { return session_of(h)->gen->cfg; }
static struct stats *stats_of(struct codec_h1 *h) { return &session_of(h)->worker->stats; }

static void send_client(struct codec_h1 *h, const uint8_t *data, size_t len) {
  if (h->exchange) h->exchange->record.bytes_out += len;
  session_send(session_of(h), data, len);
}

static void emit_to_client(void *ctx, const uint8_t *data, size_t len) { send_client(ctx, data, len); }

static void count_response(struct codec_h1 *h, int status) {
  static const enum stat_counter by_class[] = {STAT_RESPONSES_1XX, STAT_RESPONSES_2XX,
                                               STAT_RESPONSES_3XX, STAT_RESPONSES_4XX,
                                               STAT_RESPONSES_5XX};
  int cls = status / 100;
  stat_add(stats_of(h), by_class[cls >= 1 && cls <= 5 ? cls - 1 : 4], 1);
}

/* The access log line of the current request (also one refused before it had an exchange). */
static void log_exchange(struct codec_h1 *h, int status) {
  struct exchange *e = h->exchange;
  struct exchange_record unforwarded = {.started_at = h->head_started_at};
  struct exchange_record *r = e ? &e->record : &unforwarded;
  if (r->logged) return;
  r->status = status;
  r->bytes_in = h->request_bytes;
  r->logged = true;
  access_log_exchange(session_of(h), r, h->requests ? &h->reader.head : NULL, "http/1.1");
}

/* Ends the current exchange now: its backend connection closes, and whatever of the request
 * it still queued dies with it. */
static void drop_exchange(struct codec_h1 *h) {
  exchange_free(h->exchange);
  h->exchange = NULL;
}

/* Stapler's own answer (400, 502, 504, ...), then the connection ends. */
static void answer_error(struct codec_h1 *h, int status, const char *why) {
  log_msg(status >= 500 ? LOG_WARN : LOG_INFO, "%s:%u: %d: %s", session_of(h)->client_ip,
          session_of(h)->client_port, status, why ? why : "");
  char out[256];
  size_t n = http1_error_response(status, out, sizeof out);
  send_client(h, (const uint8_t *)out, n);
  stat_add(stats_of(h), STAT_ERRORS_SENT, 1);
  count_response(h, status);
  log_exchange(h, status);
  drop_exchange(h);
  h->state = H1_CLOSING;
  session_finish(session_of(h), why);
}

/* The exchange is over on both sides: free it and go on with the next request, if any. */
static void exchange_over(struct codec_h1 *h) {
  drop_exchange(h);
  if (h->state == H1_CLOSING) return;
  if (h->close_after || session_of(h)->draining) {
    h->state = H1_CLOSING;
    session_finish(session_of(h), "exchange complete");
    return;
  }
  h->state = H1_IDLE;
  http1_reader_next(&h->reader);
  if (session_of(h)->client_eof) {
    h->state = H1_CLOSING;
    session_finish(session_of(h), "client closed");
    return;
  }
  session_arm_timer(session_of(h));
  session_resume(session_of(h)); /* a pipelined request may be waiting */
}

static void check_over(struct codec_h1 *h) {
  if (h->exchange && h->state == H1_EXCHANGE && h->response_done && h->request_read)
    exchange_over(h);
}

/* ---- exchange events -----------------------------------------------------------------------*/

static void on_response_head(void *owner, struct exchange *e, const struct http_head *res) {
  struct codec_h1 *h = owner;
  if (h->state == H1_CLOSING) return;
  struct http1_writer w = {.len = 0, .emit = emit_to_client, .ctx = h};
  if (res->status < 200 && res->status != 101) {
    /* Interim responses (100, 103) are relayed; HTTP/1.0 clients know none. */
    if (h->client_minor >= 1) http1_write_response(&w, res, HTTP_FRAMING_NONE, false);
    session_flush(session_of(h));
    return;
  }
  h->head_sent = true;
  if (res->status == 101) {
    http1_write_response(&w, res, HTTP_FRAMING_NONE, false);
    count_response(h, 101);
    log_exchange(h, 101);
    /* The tunnel's own record starts now (logged when it closes). */
    e->record = (struct exchange_record){.started_at = uv_now(&session_of(h)->worker->loop)};
    h->state = H1_TUNNEL;
    session_flush(session_of(h));
    session_resume(session_of(h)); /* client bytes after the request are tunnel bytes */
    return;
  }
  bool must_close;
  h->out_framing = http1_client_framing(res, h->client_minor, &must_close);
  if (must_close) h->close_after = true;
  if (!h->request_read) {
    /* An early answer. Unless what is left of the request is small enough to drop, the
     * connection ends after the response. */
    const struct http_head *req = &h->reader.head;
    bool small = req->framing == HTTP_FRAMING_LENGTH &&
                 h->reader.parser.content_length <= DISCARD_MAX;
    if (!small) h->close_after = true;
  }
  if (session_of(h)->draining) h->close_after = true;
  http1_write_response(&w, res, h->out_framing, h->close_after);
  session_flush(session_of(h));
}

static void on_response_data(void *owner, struct exchange *e, const uint8_t *data, size_t len) {
  struct codec_h1 *h = owner;
  if (h->state == H1_CLOSING) return;
  session_touch(session_of(h));
  if (h->state == H1_TUNNEL) {
    send_client(h, data, len);
  } else {
    struct http1_writer w = {.len = 0, .emit = emit_to_client, .ctx = h};
    http1_write_body(&w, h->out_framing, data, len);
  }
  session_flush(session_of(h));
  if (session_congested(session_of(h))) exchange_pause_response(e, true);
}

static void on_response_end(void *owner, struct exchange *e, const struct http_head *trailers,
                            size_t from) {
  struct codec_h1 *h = owner;
  if (h->state == H1_CLOSING) return;
  if (h->state == H1_TUNNEL) { /* the backend finished sending */
    session_shutdown_write(session_of(h));
    if (exchange_done(e)) session_finish(session_of(h), "tunnel closed");
    return;
  }
  struct http1_writer w = {.len = 0, .emit = emit_to_client, .ctx = h};
  http1_write_end(&w, h->out_framing, trailers, from);
  h->response_done = true;
  count_response(h, e->record.status);
  log_exchange(h, e->record.status);
  session_flush(session_of(h));
  if (!h->request_read && h->close_after) {
    h->state = H1_CLOSING; /* the rest of the request is never read */
    session_finish(session_of(h), "response complete before the request");
    return;
  }
  check_over(h);
}

static void on_failed(void *owner, struct exchange *e, int status, const char *why) {
  struct codec_h1 *h = owner;
  if (h->state == H1_CLOSING) return;
  if (h->state == H1_TUNNEL) {
    session_close(session_of(h), why);
    return;
  }
  if (!h->head_sent && status) {
    answer_error(h, status, why);
    return;
  }
  /* The response broke off: the client sees the truncation, not a made-up ending. */
  log_msg(LOG_WARN, "%s:%u: closing: %s", session_of(h)->client_ip, session_of(h)->client_port,
          why);
  log_exchange(h, e->record.status ? e->record.status : 502);
  drop_exchange(h);
  h->state = H1_CLOSING;
  session_close(session_of(h), why);
}

static void on_writable(void *owner, struct exchange *e) {
  session_resume(session_of((struct codec_h1 *)owner));
}

static const struct exchange_events kExchangeEvents = {on_response_head, on_response_data,
                                                       on_response_end, on_failed, on_writable};

/* ---- request events --------------------------------------------------------------------*/

static void on_request_head(void *ctx) {
  struct codec_h1 *h = ctx;
  struct http_head *req = &h->reader.head;
  h->state = H1_EXCHANGE;
  h->client_minor = req->version_minor;
  h->request_read = h->head_sent = h->response_done = false;
  if (!llhttp_should_keep_alive(&h->reader.parser)) h->close_after = true;
  stat_add(stats_of(h), STAT_REQUESTS, 1);
  h->exchange = exchange_new(session_of(h), &kExchangeEvents, h);
  h->exchange->record.started_at = h->head_started_at;
  exchange_start(h->exchange, req, req->version_minor);
  session_arm_timer(session_of(h)); /* the backend's connect timeout may come first */
}

static void on_request_body(void *ctx, const uint8_t *data, size_t len) {
  struct codec_h1 *h = ctx;
  if (h->exchange) exchange_request_data(h->exchange, data, len);
}

static void on_request_end(void *ctx) {
  struct codec_h1 *h = ctx;
  h->request_read = true;
  if (!h->exchange) return;
  const struct http_head *req = &h->reader.head;
  bool trailers = h->reader.in_trailers && h->reader.trailer_from < req->field_count;
  exchange_request_end(h->exchange, trailers ? req : NULL, h->reader.trailer_from);
}

static const struct http1_reader_events kRequestEvents = {on_request_head, on_request_body,
                                                          on_request_end};

/* ---- the codec -------------------------------------------------------------------------*/

static size_t h1_input(struct codec *c, const uint8_t *data, size_t len) {
  struct codec_h1 *h = h1_of(c);
  if (h->state == H1_CLOSING) return len;
  if (h->state == H1_TUNNEL) {
    if (exchange_congested(h->exchange)) return 0;
    h->exchange->record.bytes_in += len;
    exchange_request_data(h->exchange, data, len);
    return len;
  }
  size_t used = 0;
  while (used < len && h->state != H1_CLOSING && h->state != H1_TUNNEL) {
    if (h->reader.state == HTTP1_READER_DONE) break; /* the next request waits its turn */
    if (h->exchange && exchange_congested(h->exchange)) break;
    if (h->reader.state == HTTP1_READER_IDLE) {
      h->state = H1_HEAD;
      h->head_started_at = uv_now(&session_of(h)->worker->loop);
      h->request_bytes = 0;
      h->requests++;
      session_arm_timer(session_of(h));
    }
    size_t n = http1_reader_feed(&h->reader, data + used, len - used);
    h->request_bytes += n;
    used += n;
    if (h->reader.state == HTTP1_READER_FAILED) {
      if (h->exchange && h->head_sent) { /* a malformed body after the response began */
        log_exchange(h, h->exchange->record.status);
        drop_exchange(h);
        h->state = H1_CLOSING;
        session_close(session_of(h), h->reader.error);
      } else {
        answer_error(h, h->reader.error_status, h->reader.error);
      }
      return len;
    }
  }
  if (h->state == H1_EXCHANGE) check_over(h);
  return h->state == H1_CLOSING ? len : used;
}

static void h1_client_eof(struct codec *c) {
  struct codec_h1 *h = h1_of(c);
  struct session *s = session_of(h);
  switch (h->state) {
  case H1_TUNNEL:
    exchange_request_end(h->exchange, NULL, 0); /* the client's half-close, passed on */
    if (exchange_done(h->exchange)) session_finish(s, "tunnel closed");
    break;
  case H1_IDLE:
    h->state = H1_CLOSING;
    session_finish(s, "client closed");
    break;
  case H1_HEAD:
    h->state = H1_CLOSING;
    session_finish(s, "client closed in the middle of a request head");
    break;
  case H1_EXCHANGE:
    if (h->request_read) {
      h->close_after = true; /* answer, then close: the client only half-closed */
    } else {
      h->state = H1_CLOSING;
      session_close(s, "client closed in the middle of a request body");
    }
    break;
  case H1_CLOSING:
    break;
  }
}

static void h1_client_writable(struct codec *c) {
  struct codec_h1 *h = h1_of(c);
  if (h->exchange && h->exchange->response_paused) exchange_pause_response(h->exchange, false);
}

static uint64_t h1_deadline(struct codec *c) {
  struct codec_h1 *h = h1_of(c);
  struct session *s = session_of(h);
  const struct config_timeouts *t = &cfg_of(h)->timeouts;
  switch (h->state) {
  case H1_IDLE:
    /* Waiting for the first request is not free: it counts as header time. */
    return h->requests == 0 ? s->opened_at + t->request_header_ms : s->last_activity + t->idle_ms;
  case H1_HEAD:
    return MIN(h->head_started_at + t->request_header_ms, s->last_activity + t->idle_ms);
  case H1_EXCHANGE:
    return MIN(exchange_deadline(h->exchange), s->last_activity + t->idle_ms);
  case H1_TUNNEL:
    return s->last_activity + t->idle_ms;
  default:
    return UINT64_MAX;
  }
}

static void h1_expire(struct codec *c, uint64_t now) {
  struct codec_h1 *h = h1_of(c);
  struct session *s = session_of(h);
  const struct config_timeouts *t = &cfg_of(h)->timeouts;
  switch (h->state) {
  case H1_IDLE:
    if (now < h1_deadline(c)) return;
    log_debug("%s:%u: %s", s->client_ip, s->client_port,
              h->requests ? "idle timeout" : "no request within timeouts.request_header");
    h->state = H1_CLOSING;
    session_finish(s, "idle");
    return;
  case H1_HEAD:
    if (now >= h->head_started_at + t->request_header_ms) {
      log_info("%s:%u: request headers not received within timeouts.request_header",
               s->client_ip, s->client_port);
      answer_error(h, 408, "request header timeout");
    } else if (now >= s->last_activity + t->idle_ms) {
      h->state = H1_CLOSING;
      session_finish(s, "idle timeout");
    }
    return;
  case H1_EXCHANGE:
    if (now >= exchange_deadline(h->exchange)) {
      exchange_expire(h->exchange, now);
    } else if (now >= s->last_activity + t->idle_ms) {
      log_exchange(h, h->head_sent ? h->exchange->record.status : 499);
      h->state = H1_CLOSING;
      session_close(s, "idle timeout");
    }
    return;
  case H1_TUNNEL:
    if (now < s->last_activity + t->idle_ms) return;
    h->state = H1_CLOSING;
    session_finish(s, "idle timeout");
    return;
  default:
    return;
  }
}

static void h1_drain(struct codec *c) {
  struct codec_h1 *h = h1_of(c);
  if (h->state == H1_IDLE) {
    h->state = H1_CLOSING;
    session_finish(session_of(h), "shutting down");
  } else {
    h->close_after = true;
  }
}

static void h1_free(struct codec *c) {
  struct codec_h1 *h = h1_of(c);
  struct exchange *e = h->exchange;
  if (e && h->state == H1_TUNNEL) {
    access_log_tunnel(session_of(h), &e->record, "upgrade");
  } else if (e && !e->record.logged) {
    /* Cut short: the backend's status when part of its response went out, else 499 (the
     * client left, or stapler stopped waiting), as nginx logs it. */
    log_exchange(h, h->head_sent ? e->record.status : 499);
  }
  exchange_free(e);
  http1_reader_free(&h->reader);
  free(h);
}

static const struct codec_ops kOps = {h1_input, h1_client_eof, h1_client_writable,
                                      h1_deadline, h1_expire, h1_drain, NULL, h1_free};

struct codec *codec_h1_new(struct session *s) {
  struct codec_h1 *h = xcalloc(1, sizeof *h);
  h->base.ops = &kOps;
  h->base.session = s;
  h->state = H1_IDLE;
  const struct config *cfg = s->gen->cfg;
  http1_reader_init(&h->reader, HTTP_REQUEST, &kRequestEvents, h, cfg->limits.max_header_bytes);
  h->reader.upgrades = cfg->backend.upgrades;
  h->reader.upgrade_count = cfg->backend.upgrade_count;
  return &h->base;
}
