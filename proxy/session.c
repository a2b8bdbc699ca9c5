/* The client session: accept, the PROXY header an L4 balancer may send, the TLS handshake, the
 * pump that moves decrypted bytes to the codec, the one timer, and the two ways to end. */
#include "stapler/session.h"

#include <openssl/err.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stapler/backend_pool.h"
#include "stapler/codec.h"
#include "stapler/generation.h"
#include "stapler/listener.h"
#include "stapler/log.h"
#include "stapler/proxy_protocol.h"
#include "stapler/sockwrite.h"
#include "stapler/util.h"
#include "stapler/worker.h"

/* Lingering after the last byte went out: closed once the client has been quiet this long,
 * or this long after it began, whichever comes first. */
#define LINGER_QUIET_MS 1000
#define LINGER_MAX_MS 5000

static void pump(struct session *s);
static void update_reading(struct session *s);
static void unqueue_flush(struct session *s);
static bool encrypt_stage(struct session *s);

/* ---- ending ----------------------------------------------------------------------------------*/

static void free_session(struct session *s) {
  struct worker *w = s->worker;
  if (s->prev)
    s->prev->next = s->next;
  else
    w->sessions = s->next;
  if (s->next) s->next->prev = s->prev;
  if (s->codec) s->codec->ops->free(s->codec); /* may log, so while the TLS session exists */
  backend_pool_close_private(&w->backend_pool, s);
  tls_session_free(&s->tls);
  if (s->flush_queued) unqueue_flush(s);
  if (s->plain) buf_put(s->plain);
  if (s->stage) buf_put(s->stage);
  if (s->proxy_header) buf_put(s->proxy_header);
  generation_unref(s->gen);
  free(s);
  worker_session_closed(w);
}

static void on_handle_closed(uv_handle_t *h) {
  struct session *s = h->data;
  if (--s->open_handles == 0) free_session(s);
}

void session_close(struct session *s, const char *why) {
  if (s->state == SESSION_CLOSED) return;
  log_debug("%s:%u: closing: %s", s->client_ip, s->client_port, why);
  s->state = SESSION_CLOSED;
  uv_close((uv_handle_t *)&s->client, on_handle_closed);
  uv_close((uv_handle_t *)&s->timer, on_handle_closed);
}

static size_t output_pending(const struct session *s) {
  return s->inflight + s->tls.out.len + (s->stage ? s->stage->len : 0);
}

static bool output_empty(const struct session *s) { return output_pending(s) == 0; }

static void on_shutdown(uv_shutdown_t *req, int status) {}

/* Everything went out. Closing now, while the client may still be sending (a request body we
 * refused, pipelined requests), would make the kernel answer with a reset that can destroy the
 * response before the client reads it. So, as nginx does, send our FIN and keep reading (and
 * dropping) until the client closes too, or briefly goes quiet. */
static void finished_sending(struct session *s) {
  if (!s->linger_allowed || s->socket_eof) {
    session_close(s, "finished");
    return;
  }
  s->lingering = true;
  s->linger_started = uv_now(&s->worker->loop);
  if (!s->fin_sent) {
    s->fin_sent = true;
    uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->client, on_shutdown);
  }
  update_reading(s);
  session_arm_timer(s);
}

void session_finish(struct session *s, const char *why) {
  if (s->state == SESSION_CLOSED || s->state == SESSION_FINISHING) return;
  log_debug("%s:%u: finishing: %s", s->client_ip, s->client_port, why);
  s->linger_allowed = s->state == SESSION_OPEN;
  if (s->state == SESSION_OPEN && !s->write_shut) {
    if (!encrypt_stage(s)) return; /* the last bytes go before close_notify */
    SSL_shutdown(s->tls.ssl);      /* queues close_notify */
    ERR_clear_error();
  }
  s->state = SESSION_FINISHING;
  update_reading(s);
  session_flush(s); /* finished_sending() follows once everything is out */
}

void session_shutdown_write(struct session *s) {
  if (s->state != SESSION_OPEN || s->write_shut) return;
  if (!encrypt_stage(s)) return;
  s->write_shut = true;
  SSL_shutdown(s->tls.ssl);
  ERR_clear_error();
  session_flush(s); /* the FIN follows once everything is out */
}

/* ---- sending -------------------------------------------------------------------------------*/

/* The most plaintext one TLS record carries. */
#define RECORD_PLAINTEXT 16384
/* Output beyond this is written at once rather than at the end of the loop pass. */
#define FLUSH_AT_ONCE (64 * 1024)

bool session_congested(struct session *s) {
  if (output_pending(s) <= SESSION_HIGH_WATER) return false;
  s->congested = true;
  return true;
}

/* What follows a write: the end of a finishing session, the FIN of a write-shut one, and
 * client_writable for a codec that was told the client is slow. */
static void after_output(struct session *s) {
  if (s->state == SESSION_FINISHING) {
    if (output_empty(s) && !s->lingering) finished_sending(s);
    return;
  }
  if (s->write_shut && output_empty(s) && !s->fin_sent) {
    s->fin_sent = true;
    uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->client, on_shutdown);
  }
  if (s->state == SESSION_OPEN && s->congested && output_pending(s) < SESSION_LOW_WATER) {
    s->congested = false;
    s->codec->ops->client_writable(s->codec);
  }
}

static void on_written(void *owner, size_t bytes, int status) {
  struct session *s = owner;
  s->inflight -= bytes;
  if (s->state == SESSION_CLOSED) return;
  if (status < 0) {
    session_close(s, "client write failed");
    return;
  }
  after_output(s);
}

/* Encrypts the staged plaintext into one record. False when the session had to close. */
static bool encrypt_stage(struct session *s) {
  struct buf *b = s->stage;
  if (!b) return true;
  s->stage = NULL;
  bool ok = tls_write(&s->tls, b->data, b->len);
  buf_put(b);
  if (!ok) session_close(s, "TLS write failed");
  return ok;
}

/* Hands the ciphertext to the socket; what it does not take now is written by libuv. */
static void write_out(struct session *s) {
  if (s->state == SESSION_CLOSED || !encrypt_stage(s) || s->tls.out.len == 0) return;
  size_t n = s->tls.out.len;
  stat_add(&s->worker->stats, STAT_BYTES_TO_CLIENT, n);
  s->inflight += n;
  s->inflight -= sockwrite(s->worker, (uv_stream_t *)&s->client, bufchain_take(&s->tls.out),
                           on_written, s);
}

static void unqueue_flush(struct session *s) {
  struct worker *w = s->worker;
  if (s->flush_prev)
    s->flush_prev->flush_next = s->flush_next;
  else
    w->flush_queue = s->flush_next;
  if (s->flush_next) s->flush_next->flush_prev = s->flush_prev;
  s->flush_prev = s->flush_next = NULL;
  s->flush_queued = false;
}

void session_flush(struct session *s) {
  if (s->state == SESSION_CLOSED) return;
  if (s->tls.out.len + (s->stage ? s->stage->len : 0) >= FLUSH_AT_ONCE) {
    write_out(s); /* bulk: no point holding it (after_output waits for the queued pass) */
  }
  if (s->flush_queued) return;
  struct worker *w = s->worker;
  s->flush_queued = true;
  s->flush_prev = NULL;
  s->flush_next = w->flush_queue;
  if (w->flush_queue) w->flush_queue->flush_prev = s;
  w->flush_queue = s;
}

void session_flush_queued(struct worker *w) {
  /* A codec told it may write again (after_output) can queue itself anew: run to empty. */
  while (w->flush_queue) {
    struct session *s = w->flush_queue;
    unqueue_flush(s);
    if (s->state == SESSION_CLOSED) continue;
    write_out(s);
    if (s->state != SESSION_CLOSED) after_output(s);
  }
}

void session_send(struct session *s, const uint8_t *data, size_t len) {
  if (s->state != SESSION_OPEN || s->write_shut || len == 0) return;
  while (len > 0) {
    if (!s->stage && len >= RECORD_PLAINTEXT) { /* full records: no copy into the stage */
      if (!tls_write(&s->tls, data, len)) session_close(s, "TLS write failed");
      return;
    }
    if (!s->stage) s->stage = buf_get(&s->worker->pool);
    struct buf *b = s->stage;
    size_t n = MIN(len, RECORD_PLAINTEXT - b->len);
    memcpy(b->data + b->len, data, n);
    b->len += n;
    data += n;
    len -= n;
    if (b->len == RECORD_PLAINTEXT && !encrypt_stage(s)) return;
  }
}

void session_touch(struct session *s) { s->last_activity = uv_now(&s->worker->loop); }

/* ---- the timer -----------------------------------------------------------------------------*/

static bool before_tls(const struct session *s) {
  return s->state == SESSION_PROXY_HEADER || s->state == SESSION_HANDSHAKE;
}

static uint64_t deadline(struct session *s) {
  const struct config_timeouts *t = &s->gen->cfg->timeouts;
  switch (s->state) {
  case SESSION_PROXY_HEADER:
  case SESSION_HANDSHAKE: return s->accepted_at + t->handshake_ms;
  case SESSION_OPEN: return s->codec->ops->deadline(s->codec);
  case SESSION_FINISHING:
    if (s->lingering)
      return MIN(s->linger_started + LINGER_MAX_MS, s->last_activity + LINGER_QUIET_MS);
    return s->last_activity + t->idle_ms; /* the client stopped reading */
  default: return UINT64_MAX;
  }
}

static void on_timer(uv_timer_t *timer) {
  struct session *s = timer->data;
  s->timer_due = 0;
  uint64_t now = uv_now(timer->loop);
  if (s->state == SESSION_CLOSED) return;
  if (now >= deadline(s)) {
    if (before_tls(s)) {
      bool pp = s->state == SESSION_PROXY_HEADER;
      stat_add(&s->worker->stats, pp ? STAT_PROXY_HEADER_FAILURES : STAT_HANDSHAKE_FAIL_TIMEOUT,
               1);
      log_info("%s:%u: %s not completed within timeouts.handshake", s->client_ip,
               s->client_port, pp ? "PROXY header" : "TLS handshake");
      session_close(s, "handshake timeout");
    } else if (s->state == SESSION_OPEN) {
      s->codec->ops->expire(s->codec, now);
      session_flush(s);
    } else {
      session_close(s, s->lingering ? "finished" : "client did not take the last bytes");
    }
  }
  session_arm_timer(s);
}

void session_arm_timer(struct session *s) {
  if (s->state == SESSION_CLOSED) return;
  uint64_t d = deadline(s);
  if (d == UINT64_MAX) return;
  if (s->timer_due && s->timer_due <= d) return; /* fires first and re-evaluates */
  uint64_t now = uv_now(&s->worker->loop);
  uv_timer_start(&s->timer, on_timer, d > now ? d - now : 0, 0);
  s->timer_due = d;
}

/* ---- reading ---------------------------------------------------------------------------------*/

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  struct session *s = h->data;
  struct buf *b = buf_get(&s->worker->pool);
  *out = uv_buf_init((char *)b->data, BUF_SIZE);
}

static void proxy_header_received(struct session *s, struct buf *b);

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *ub) {
  struct session *s = stream->data;
  struct buf *b = ub->base ? (struct buf *)(ub->base - offsetof(struct buf, data)) : NULL;
  if (nread > 0) {
    b->len = (size_t)nread;
    stat_add(&s->worker->stats, STAT_BYTES_FROM_CLIENT, (uint64_t)nread);
    session_touch(s);
    if (s->state == SESSION_FINISHING) { /* lingering: what the client still sends is dropped */
      buf_put(b);
      return;
    }
    if (s->state == SESSION_PROXY_HEADER) {
      proxy_header_received(s, b);
      return;
    }
    tls_feed(&s->tls, b);
    pump(s);
    return;
  }
  if (b) buf_put(b);
  if (nread == 0 || s->state == SESSION_CLOSED) return;
  if (before_tls(s)) {
    session_close(s, "client left during the handshake");
  } else if (s->state == SESSION_FINISHING) {
    session_close(s, "finished");
  } else if (nread != UV_EOF) {
    session_close(s, uv_strerror((int)nread));
  } else {
    s->socket_eof = true;
    pump(s); /* delivers the end once every byte before it is consumed */
  }
}

static void update_reading(struct session *s) {
  if (s->state == SESSION_CLOSED) return;
  bool want = before_tls(s) || (s->state == SESSION_FINISHING && s->lingering) ||
              (s->state == SESSION_OPEN && !s->socket_eof && !s->client_eof &&
               !tls_has_input(&s->tls) && !s->plain);
  if (want && !s->reading) {
    if (uv_read_start((uv_stream_t *)&s->client, on_alloc, on_read) == 0) s->reading = true;
  } else if (!want && s->reading) {
    uv_read_stop((uv_stream_t *)&s->client);
    s->reading = false;
  }
}

/* ---- the handshake -----------------------------------------------------------------------*/

static void count_handshake(struct session *s) {
  struct stats *st = &s->worker->stats;
  bool ecdsa = s->tls.cert && s->tls.cert->info.kind == KEY_KIND_ECDSA;
  stat_add(st, ecdsa ? STAT_HANDSHAKES_ECDSA : STAT_HANDSHAKES_RSA, 1);
  stat_add(st, SSL_version(s->tls.ssl) == TLS1_3_VERSION ? STAT_HANDSHAKES_TLS13
                                                           : STAT_HANDSHAKES_TLS12, 1);
  if (SSL_session_reused(s->tls.ssl)) stat_add(st, STAT_HANDSHAKES_RESUMED, 1);
  if (s->tls.stapled) {
    stat_add(st, STAT_STAPLES_SENT, 1);
    cert_count_staple(s->tls.cert, s->worker->id);
  }
}

static uint16_t port_of(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)ss)->sin_port);
  if (ss->ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
  return 0;
}

/* X-Forwarded-* as every request of this session carries them: the client as the backend
 * should see it, and the port it reached (the balancer's, with a PROXY header). */
static void build_forwarding(struct session *s) {
  uint16_t port = port_of(&s->local_addr) ? port_of(&s->local_addr) : s->local_port;
  int n = snprintf(s->forwarding, sizeof s->forwarding,
                   "X-Forwarded-For: %s\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: %u\r\n",
                   s->client_ip, port);
  s->forwarding_len = n > 0 && (size_t)n < sizeof s->forwarding ? (size_t)n : 0;
}

/* The client's SNI for a log line, escaped: SNI "name", or no SNI. `out` has room for
 * SNI_LOG_SIZE bytes. */
#define SNI_LOG_SIZE (LOG_ESCAPED_SIZE(255) + 8)
static const char *sni_for_log(const struct session *s, char *out) {
  const char *sni = session_sni(s);
  if (!sni) return "no SNI";
  memcpy(out, "SNI \"", 5);
  size_t n = 5 + log_escape(out + 5, SNI_LOG_SIZE - 7, sni, strlen(sni));
  memcpy(out + n, "\"", 2);
  return out;
}

static void handshake_done(struct session *s) {
  s->state = SESSION_OPEN;
  s->opened_at = uv_now(&s->worker->loop);
  count_handshake(s);
  if (log_enabled(LOG_DEBUG)) {
    char sni[SNI_LOG_SIZE];
    log_msg(LOG_DEBUG, "%s:%u: TLS %s %s, %s, %s certificate%s", s->client_ip, s->client_port,
            SSL_get_version(s->tls.ssl), SSL_get_cipher_name(s->tls.ssl), sni_for_log(s, sni),
            s->tls.cert && s->tls.cert->info.kind == KEY_KIND_ECDSA ? "ECDSA" : "RSA",
            s->tls.stapled ? ", stapled" : "");
  }
  /* BoringSSL holds TLS 1.3 tickets back until the server writes; a zero-byte write sends
   * them now, so a client that resumes later has one even if it never sends a request. */
  SSL_write(s->tls.ssl, "", 0);
  ERR_clear_error();
  build_forwarding(s);
  const uint8_t *alpn = NULL;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(s->tls.ssl, &alpn, &alpn_len);
  if (s->gen->cfg->backend.mode == BACKEND_MODE_TCP)
    s->codec = codec_tcp_new(s);
  else if (alpn_len == 2 && !memcmp(alpn, "h2", 2))
    s->codec = codec_h2_new(s);
  else
    s->codec = codec_h1_new(s);
  session_arm_timer(s);
}

static enum stat_counter failure_counter(enum certselect_failure sel) {
  switch (sel) {
  case CERTSELECT_NO_VERSION:
  case CERTSELECT_NO_USABLE_CERT: return STAT_HANDSHAKE_FAIL_NO_CERTIFICATE;
  case CERTSELECT_NO_VALID_STAPLE: return STAT_HANDSHAKE_FAIL_NO_STAPLE;
  case CERTSELECT_BAD_SNI: return STAT_HANDSHAKE_FAIL_BAD_SNI;
  default: return STAT_HANDSHAKE_FAIL_PROTOCOL;
  }
}

static void handshake_step(struct session *s) {
  int r = SSL_do_handshake(s->tls.ssl);
  if (r == 1) {
    handshake_done(s);
    return;
  }
  if (SSL_get_error(s->tls.ssl, r) == SSL_ERROR_WANT_READ) return;
  enum certselect_failure sel = s->tls.select_failure;
  stat_add(&s->worker->stats, failure_counter(sel), 1);
  const char *why = s->tls.refusal        ? s->tls.refusal
                    : sel != CERTSELECT_OK ? certselect_failure_text(sel)
                                           : tls_error_string();
  if (sel == CERTSELECT_BAD_SNI) { /* the refusal shows the name */
    log_info("%s:%u: TLS handshake failed: %s", s->client_ip, s->client_port, why);
  } else {
    char sni[SNI_LOG_SIZE];
    log_info("%s:%u: TLS handshake failed (%s): %s", s->client_ip, s->client_port,
             sni_for_log(s, sni), why);
  }
  ERR_clear_error();
  session_finish(s, "handshake failed"); /* sends the alert BoringSSL queued */
}

/* ---- the pump: ciphertext in, plaintext to the codec, as far as it takes it ---------------*/

static void client_ended(struct session *s) {
  if (s->client_eof) return;
  s->client_eof = true;
  update_reading(s);
  s->codec->ops->client_eof(s->codec);
}

/* Hands pending plaintext to the codec. False when it took less than all of it. */
static bool feed_codec(struct session *s) {
  struct buf *b = s->plain;
  size_t used = s->codec->ops->input(s->codec, b->data + b->off, b->len - b->off);
  if (s->plain != b) return false; /* cannot happen: the codec does not touch `plain` */
  b->off += used;
  if (b->off < b->len) return false;
  buf_put(b);
  s->plain = NULL;
  return s->state == SESSION_OPEN;
}

/* Reads one record's worth of plaintext into s->plain. False when there is nothing more. */
static bool read_plain(struct session *s) {
  struct buf *b = buf_get(&s->worker->pool);
  int n = SSL_read(s->tls.ssl, b->data, BUF_SIZE);
  if (n > 0) {
    b->len = (size_t)n;
    s->plain = b;
    return true;
  }
  buf_put(b);
  int err = SSL_get_error(s->tls.ssl, n);
  if (err == SSL_ERROR_WANT_READ) {
    if (s->socket_eof) client_ended(s); /* a FIN without close_notify ends it just the same */
    return false;
  }
  if (err == SSL_ERROR_ZERO_RETURN) {
    client_ended(s);
    return false;
  }
  log_info("%s:%u: TLS error from client: %s", s->client_ip, s->client_port, tls_error_string());
  session_close(s, "TLS error");
  return false;
}

static void pump(struct session *s) {
  if (s->pumping) {
    s->repump = true;
    return;
  }
  s->pumping = true;
  do {
    s->repump = false;
    if (s->state == SESSION_HANDSHAKE) handshake_step(s);
    while (s->state == SESSION_OPEN && !s->client_eof) {
      if (s->plain ? !feed_codec(s) : !read_plain(s)) break;
    }
  } while (s->repump && s->state == SESSION_OPEN);
  s->pumping = false;
  if (s->state == SESSION_CLOSED) return;
  session_flush(s);
  update_reading(s);
}

void session_resume(struct session *s) { pump(s); }

/* ---- the PROXY header from a load balancer ------------------------------------------------*/

static void set_client(struct session *s, const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    memcpy(&s->client_addr, in, sizeof *in);
    uv_ip4_name(in, s->client_ip, sizeof s->client_ip);
    s->client_port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    memcpy(&s->client_addr, in6, sizeof *in6);
    uv_ip6_name(in6, s->client_ip, sizeof s->client_ip);
    s->client_port = ntohs(in6->sin6_port);
  }
}

/* Collects `b` (taking it) until a whole header is there, then starts TLS on what follows. */
static void proxy_header_received(struct session *s, struct buf *b) {
  struct buf *h = s->proxy_header;
  if (!h) {
    s->proxy_header = h = b;
  } else {
    size_t n = MIN(b->len, BUF_SIZE - h->len);
    memcpy(h->data + h->len, b->data, n);
    h->len += n;
    buf_put(b); /* a header is at most ~1 KiB: the rest cannot be needed yet */
  }
  struct pp_info info;
  size_t used = 0;
  const char *error = NULL;
  enum pp_result r = pp_parse(h->data, h->len, &info, &used, &error);
  if (r == PP_INCOMPLETE) return;
  if (r == PP_BAD) {
    stat_add(&s->worker->stats, STAT_PROXY_HEADER_FAILURES, 1);
    log_info("%s:%u: refused: %s (listen[].proxy_protocol is on for this address)",
             s->client_ip, s->client_port, error);
    session_close(s, error);
    return;
  }
  if (!info.local) {
    set_client(s, (struct sockaddr *)&info.src);
    s->local_addr = info.dst;
  }
  s->proxy_header = NULL;
  s->state = SESSION_HANDSHAKE;
  h->off = used; /* TLS starts right after the header */
  if (h->off < h->len) {
    tls_feed(&s->tls, h);
    pump(s);
  } else {
    buf_put(h);
  }
}

bool session_backend_proxy_header(const struct session *s, uint8_t *out, size_t cap,
                                  size_t *len) {
  enum proxy_protocol version = s->gen->cfg->backend.proxy_protocol;
  const struct sockaddr *src = (const struct sockaddr *)&s->client_addr;
  const struct sockaddr *dst = (const struct sockaddr *)&s->local_addr;
  if (version == PROXY_PROTOCOL_V1) {
    *len = pp_write_v1((char *)out, cap, src, dst);
  } else if (version == PROXY_PROTOCOL_V2) {
    const uint8_t *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(s->tls.ssl, &alpn, &alpn_len);
    *len = pp_write_v2(out, cap, src, dst, alpn, alpn_len, session_sni(s));
  } else {
    return false;
  }
  return *len > 0;
}

/* ---- accepting -----------------------------------------------------------------------------*/

const char *session_sni(const struct session *s) {
  return SSL_get_servername(s->tls.ssl, TLSEXT_NAMETYPE_host_name);
}

void session_client_address(const struct session *s, char *out, size_t cap) {
  snprintf(out, cap, strchr(s->client_ip, ':') ? "[%s]:%u" : "%s:%u", s->client_ip,
           s->client_port);
}

static void read_addresses(struct session *s) {
  int len = sizeof s->local_addr;
  uv_tcp_getsockname(&s->client, (struct sockaddr *)&s->local_addr, &len);
  struct sockaddr_storage peer;
  len = sizeof peer;
  strcpy(s->client_ip, "unknown");
  if (uv_tcp_getpeername(&s->client, (struct sockaddr *)&peer, &len) == 0)
    set_client(s, (struct sockaddr *)&peer);
}

void session_accept(struct worker *w, struct listener *l, int fd) {
  if (w->draining || worker_open_total(w) >= w->gen->cfg->limits.max_connections) {
    close(fd); /* over the limit: closed at once */
    stat_add(&w->stats, STAT_REJECTED, 1);
    return;
  }
  struct session *s = xcalloc(1, sizeof *s);
  s->worker = w;
  s->gen = generation_ref(w->gen);
  s->local_port = l->port;
  uv_tcp_init(&w->loop, &s->client);
  uv_timer_init(&w->loop, &s->timer);
  s->client.data = s->timer.data = s;
  s->open_handles = 2;
  s->next = w->sessions;
  if (w->sessions) w->sessions->prev = s;
  w->sessions = s;
  worker_session_opened(w);
  s->accepted_at = s->last_activity = uv_now(&w->loop);
  s->state = SESSION_HANDSHAKE;
  if (uv_tcp_open(&s->client, fd) != 0) {
    close(fd); /* not adopted by the handle */
    session_close(s, "accept failed");
    return;
  }
  if (!tls_session_init(&s->tls, s->gen, &w->pool)) {
    session_close(s, "accept failed");
    return;
  }
  stat_add(&w->stats, STAT_ACCEPTED, 1);
  uv_tcp_nodelay(&s->client, 1);
  read_addresses(s);
  s->state = l->proxy_protocol ? SESSION_PROXY_HEADER : SESSION_HANDSHAKE;
  session_arm_timer(s);
  update_reading(s);
}

void session_generation_changed(struct session *s) {
  if (s->state == SESSION_OPEN && s->codec->ops->generation_changed)
    s->codec->ops->generation_changed(s->codec);
}

void session_drain(struct session *s) {
  s->draining = true;
  if (before_tls(s))
    session_close(s, "shutting down");
  else if (s->state == SESSION_OPEN)
    s->codec->ops->drain(s->codec);
}
