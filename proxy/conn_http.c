/* HTTP mode: feeding the http1 state machine and acting on what it decides. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/access_log.h"
#include "stapler/conn.h"
#include "stapler/generation.h"
#include "stapler/log.h"
#include "stapler/util.h"
#include "stapler/worker.h"

static void to_backend(void *ctx, const uint8_t *data, size_t len) { backend_send(ctx, data, len); }
static void to_client(void *ctx, const uint8_t *data, size_t len) { client_send(ctx, data, len); }

void http_start(struct conn *c) {
  const struct config *cfg = c->gen->cfg;
  struct http1_params p = {.max_header_bytes = cfg->limits.max_header_bytes,
                           .forwarded_headers = cfg->backend.forwarded_headers,
                           .server_port = c->local_port};
  snprintf(p.client_ip, sizeof p.client_ip, "%s", c->client_ip);
  struct http1_sink sink = {to_backend, to_client, c};
  c->http = xmalloc(sizeof *c->http);
  http1_init(c->http, &p, &sink);
}

/* Status logged for an exchange the connection ended before its response was complete:
 * the backend's status when part of its response went out, else 499 (the client left, or
 * the proxy stopped waiting), as nginx logs it. */
static void log_cut_short(struct conn *c) {
  struct http1 *h = c->http;
  if (c->tunnel || !h->awaiting_response || c->exchange_logged) return;
  access_log_exchange(c, h->response_started ? llhttp_get_status_code(&h->res) : 499);
}

void http_free(struct conn *c) {
  if (!c->http) return;
  log_cut_short(c);
  http1_free(c->http);
  free(c->http);
  c->http = NULL;
}

static void count_response(struct conn *c) {
  static const enum stat_counter by_class[] = {STAT_RESPONSES_1XX, STAT_RESPONSES_2XX,
                                       STAT_RESPONSES_3XX, STAT_RESPONSES_4XX,
                                       STAT_RESPONSES_5XX};
  int cls = c->http->last_status / 100;
  stat_add(&c->worker->stats, by_class[cls >= 1 && cls <= 5 ? cls - 1 : 4], 1);
}

/* Answers with `status` unless a response is already under way, then ends the connection. */
void http_fail(struct conn *c, int status, const char *why) {
  struct http1 *h = c->http;
  enum log_level level = status >= 500 ? LOG_WARN : LOG_INFO;
  log_msg(level, "%s:%u: %d: %s", c->client_ip, c->client_port, status, why ? why : "");
  if (h->response_started && h->awaiting_response) {
    conn_close(c, why); /* logged as cut short, with the backend's status */
    return;
  }
  char out[256];
  size_t n = http1_error_response(status, out, sizeof out);
  client_send(c, (const uint8_t *)out, n);
  stat_add(&c->worker->stats, STAT_ERRORS_SENT, 1);
  h->last_status = status;
  count_response(c);
  access_log_exchange(c, status);
  c->exchange_logged = true;
  conn_finish(c, why);
}

void http_react(struct conn *c) {
  struct http1 *h = c->http;
  if (c->phase != CONN_OPEN || c->finishing) return;
  if (h->error_status) {
    /* A 502 decided here means the backend answered wrongly or went away mid-exchange;
     * failed connects and timeouts are counted where they happen. */
    if (h->error_status == 502) stat_add(&c->worker->stats, STAT_BACKEND_BROKEN, 1);
    http_fail(c, h->error_status, h->error_reason);
    return;
  }
  if (h->backend_broken) {
    log_warn("%s:%u: closing: %s", c->client_ip, c->client_port, h->error_reason);
    stat_add(&c->worker->stats, STAT_BACKEND_BROKEN, 1);
    conn_close(c, h->error_reason); /* logged as cut short, with the backend's status */
    return;
  }
  if (h->upgraded && !c->tunnel) {
    c->tunnel = true; /* from here on bytes pass as they are, both ways */
    c->exchange_started_at = uv_now(c->client.loop);
    c->exchange_bytes_in = c->exchange_bytes_out = 0;
    if (c->plain) {
      backend_send_buf(c, c->plain);
      c->plain = NULL;
    }
    return;
  }
  if (h->awaiting_response && c->backend_state == BACKEND_NONE) backend_connect(c);
  if (!h->awaiting_response && !h->res_reading &&
      (h->close_after_response || c->draining || c->client_eof))
    conn_finish(c, "exchange complete");
}

void http_client_data(struct conn *c) {
  struct http1 *h = c->http;
  struct buf *b = c->plain;
  enum http1_req_state before = h->req_state;
  unsigned requests = h->requests, begun = h->begun;
  size_t used = http1_client_data(h, b->data + b->off, b->len - b->off);
  b->off += used;
  if (h->begun != begun) { /* a new exchange: its bytes and time start now */
    c->exchange_started_at = uv_now(c->client.loop);
    c->exchange_bytes_in = c->exchange_bytes_out = 0;
  }
  c->exchange_bytes_in += used;
  if (b->off == b->len) {
    buf_put(b);
    c->plain = NULL;
  }
  stat_add(&c->worker->stats, STAT_REQUESTS, h->requests - requests);
  if (h->req_state == HTTP1_REQ_HEADERS && before != HTTP1_REQ_HEADERS) {
    c->header_started_at = uv_now(c->client.loop);
    conn_arm_timer(c);
  }
  http_react(c);
}

void http_backend_data(struct conn *c, const uint8_t *data, size_t len) {
  struct http1 *h = c->http;
  unsigned responses = h->responses;
  http1_backend_data(h, data, len);
  if (h->responses != responses) {
    count_response(c);
    access_log_exchange(c, h->last_status);
  }
  http_react(c);
}

void http_backend_eof(struct conn *c) {
  struct http1 *h = c->http;
  unsigned responses = h->responses;
  http1_backend_eof(h);
  if (h->responses != responses) {
    count_response(c);
    access_log_exchange(c, h->last_status);
  }
  http_react(c);
}
