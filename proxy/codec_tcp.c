/* tcp mode: the decrypted bytes go to the backend and back unchanged, through one exchange
 * that is a tunnel from the start. Each side's end (close_notify or FIN from the client, FIN
 * from the backend) is passed on as a half-close; the session ends when both have ended. */
#include <stdlib.h>

#include "stapler/access_log.h"
#include "stapler/codec.h"
#include "stapler/exchange.h"
#include "stapler/generation.h"
#include "stapler/session.h"
#include "stapler/util.h"

struct codec_tcp {
  struct codec base;
  struct exchange *exchange;
  bool closing;
};

static struct codec_tcp *tcp_of(struct codec *c) { return (struct codec_tcp *)c; }

static void finish_if_done(struct codec_tcp *t) {
  if (!t->closing && exchange_done(t->exchange)) {
    t->closing = true;
    session_finish(t->base.session, "tunnel closed");
  }
}

static void on_head(void *owner, struct exchange *e, const struct http_head *res) {}

static void on_data(void *owner, struct exchange *e, const uint8_t *data, size_t len) {
  struct codec_tcp *t = owner;
  if (t->closing) return;
  e->record.bytes_out += len;
  session_touch(t->base.session);
  session_send(t->base.session, data, len);
  session_flush(t->base.session);
  if (session_congested(t->base.session)) exchange_pause_response(e, true);
}

static void on_end(void *owner, struct exchange *e, const struct http_head *trailers,
                   size_t from) {
  struct codec_tcp *t = owner;
  if (t->closing) return;
  session_shutdown_write(t->base.session); /* the backend finished sending */
  finish_if_done(t);
}

static void on_failed(void *owner, struct exchange *e, int status, const char *why) {
  struct codec_tcp *t = owner;
  t->closing = true;
  session_close(t->base.session, why);
}

static void on_writable(void *owner, struct exchange *e) {
  session_resume(((struct codec_tcp *)owner)->base.session);
}

static const struct exchange_events kEvents = {on_head, on_data, on_end, on_failed, on_writable};

static size_t tcp_input(struct codec *c, const uint8_t *data, size_t len) {
  struct codec_tcp *t = tcp_of(c);
  if (t->closing) return len;
  if (exchange_congested(t->exchange)) return 0;
  t->exchange->record.bytes_in += len;
  exchange_request_data(t->exchange, data, len);
  return len;
}

static void tcp_client_eof(struct codec *c) {
  struct codec_tcp *t = tcp_of(c);
  exchange_request_end(t->exchange, NULL, 0); /* the client's half-close, passed on */
  finish_if_done(t);
}

static void tcp_client_writable(struct codec *c) {
  struct codec_tcp *t = tcp_of(c);
  if (t->exchange->response_paused) exchange_pause_response(t->exchange, false);
}

static uint64_t tcp_deadline(struct codec *c) {
  struct session *s = c->session;
  struct codec_tcp *t = tcp_of(c);
  return MIN(exchange_deadline(t->exchange), s->last_activity + s->gen->cfg->timeouts.idle_ms);
}

static void tcp_expire(struct codec *c, uint64_t now) {
  struct codec_tcp *t = tcp_of(c);
  struct session *s = c->session;
  if (now >= exchange_deadline(t->exchange)) {
    exchange_expire(t->exchange, now);
  } else if (now >= s->last_activity + s->gen->cfg->timeouts.idle_ms && !t->closing) {
    t->closing = true;
    session_finish(s, "idle timeout");
  }
}

static void tcp_drain(struct codec *c) {} /* a tunnel ends when its peers end it */

static void tcp_free(struct codec *c) {
  struct codec_tcp *t = tcp_of(c);
  access_log_tunnel(c->session, &t->exchange->record, "tcp");
  exchange_free(t->exchange);
  free(t);
}

static const struct codec_ops kOps = {tcp_input, tcp_client_eof, tcp_client_writable,
                                      tcp_deadline, tcp_expire, tcp_drain, NULL, tcp_free};

struct codec *codec_tcp_new(struct session *s) {
  struct codec_tcp *t = xcalloc(1, sizeof *t);
  t->base.ops = &kOps;
  t->base.session = s;
  t->exchange = exchange_new(s, &kEvents, t);
  exchange_start_tunnel(t->exchange);
  return &t->base;
}
