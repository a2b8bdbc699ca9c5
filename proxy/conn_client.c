/* The client side of a connection: reading ciphertext, driving BoringSSL, sending ciphertext. */
#include <openssl/err.h>
#include <stddef.h>
#include <string.h>

#include "stapler/conn.h"
#include "stapler/generation.h"
#include "stapler/log.h"
#include "stapler/util.h"
#include "stapler/worker.h"

bool client_congested(const struct conn *c) {
  return c->client_inflight + c->tls.out.len > CONN_HIGH_WATER;
}

static void on_client_written(struct conn *c, size_t bytes, int status) {
  c->client_inflight -= bytes;
  if (c->phase == CONN_CLOSING) return;
  if (status < 0) {
    conn_close(c, "client write failed");
    return;
  }
  if (c->finishing && c->client_inflight == 0) {
    conn_close(c, "finished");
    return;
  }
  backend_update_reading(c);
}

void client_flush(struct conn *c) {
  if (c->phase == CONN_CLOSING || c->tls.out.len == 0) return;
  size_t n = c->tls.out.len;
  struct buf *chain = bufchain_take(&c->tls.out);
  stat_add(&c->worker->stats, STAT_BYTES_TO_CLIENT, n);
  c->client_inflight += n;
  c->client_inflight -= conn_write(c, (uv_stream_t *)&c->client, chain, on_client_written);
}

void client_send(struct conn *c, const uint8_t *data, size_t len) {
  if (c->phase != CONN_OPEN || c->finishing) return;
  c->exchange_bytes_out += len;
  if (!tls_write(&c->tls, data, len)) conn_close(c, "TLS write failed");
}

/* ---- reading -----------------------------------------------------------------------------*/

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  struct conn *c = h->data;
  struct buf *b = buf_get(&c->worker->pool);
  *out = uv_buf_init((char *)b->data, BUF_SIZE);
}

static void client_eof_reached(struct conn *c) {
  c->client_eof = true;
  client_update_reading(c);
  if (c->tunnel) {
    backend_flush(c); /* shuts the backend's write side once everything is sent */
  } else if (c->http && http1_idle(c->http)) {
    conn_finish(c, "client closed");
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *ub) {
  struct conn *c = s->data;
  struct buf *b = ub->base ? (struct buf *)(ub->base - offsetof(struct buf, data)) : NULL;
  if (nread > 0) {
    b->len = (size_t)nread;
    stat_add(&c->worker->stats, STAT_BYTES_FROM_CLIENT, (uint64_t)nread);
    conn_touch(c);
    if (c->phase == CONN_PROXY_HEADER) {
      proxy_header_received(c, b);
      return;
    }
    tls_feed(&c->tls, b);
    client_pump(c);
    return;
  }
  if (b) buf_put(b);
  if (nread == 0 || c->phase == CONN_CLOSING) return;
  if (conn_before_tls(c))
    conn_close(c, "client left during the handshake");
  else if (nread != UV_EOF)
    conn_close(c, uv_strerror((int)nread));
  else
    client_eof_reached(c);
}

void client_update_reading(struct conn *c) {
  if (c->phase == CONN_CLOSING) return;
  bool want = conn_before_tls(c) ||
              (!c->client_eof && !c->finishing && !tls_has_input(&c->tls) && !c->plain &&
               !backend_congested(c));
  if (want && !c->client_reading) {
    if (uv_read_start((uv_stream_t *)&c->client, on_alloc, on_read) == 0) c->client_reading = true;
  } else if (!want && c->client_reading) {
    uv_read_stop((uv_stream_t *)&c->client);
    c->client_reading = false;
  }
}

void client_start(struct conn *c) { client_update_reading(c); }

void client_set_address(struct conn *c, const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    memcpy(&c->client_addr, in, sizeof *in);
    uv_ip4_name(in, c->client_ip, sizeof c->client_ip);
    c->client_port = ntohs(in->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    memcpy(&c->client_addr, in6, sizeof *in6);
    uv_ip6_name(in6, c->client_ip, sizeof c->client_ip);
    c->client_port = ntohs(in6->sin6_port);
  }
}

/* ---- handshake -----------------------------------------------------------------------------*/

static void count_handshake(struct conn *c) {
  struct stats *s = &c->worker->stats;
  bool ecdsa = c->tls.cert && c->tls.cert->info.kind == KEY_KIND_ECDSA;
  stat_add(s, ecdsa ? STAT_HANDSHAKES_ECDSA : STAT_HANDSHAKES_RSA, 1);
  stat_add(s, SSL_version(c->tls.ssl) == TLS1_3_VERSION ? STAT_HANDSHAKES_TLS13
                                                          : STAT_HANDSHAKES_TLS12, 1);
  if (SSL_session_reused(c->tls.ssl)) stat_add(s, STAT_HANDSHAKES_RESUMED, 1);
  if (c->tls.stapled) {
    stat_add(s, STAT_STAPLES_SENT, 1);
    cert_count_staple(c->tls.cert);
  }
}

static void handshake_done(struct conn *c) {
  c->phase = CONN_OPEN;
  c->exchange_started_at = uv_now(c->client.loop);
  count_handshake(c);
  const char *sni = SSL_get_servername(c->tls.ssl, TLSEXT_NAMETYPE_host_name);
  log_debug("%s:%u: TLS %s %s, SNI %s, %s certificate%s", c->client_ip, c->client_port,
            SSL_get_version(c->tls.ssl), SSL_get_cipher_name(c->tls.ssl), sni ? sni : "-",
            c->tls.cert && c->tls.cert->info.kind == KEY_KIND_ECDSA ? "ECDSA" : "RSA",
            c->tls.stapled ? ", stapled" : "");
  if (c->gen->cfg->backend.mode == BACKEND_MODE_TCP) {
    c->tunnel = true;
    backend_connect(c);
  } else {
    http_start(c);
  }
  conn_arm_timer(c);
}

static void handshake_step(struct conn *c) {
  int r = SSL_do_handshake(c->tls.ssl);
  if (r == 1) {
    handshake_done(c);
    return;
  }
  if (SSL_get_error(c->tls.ssl, r) == SSL_ERROR_WANT_READ) return;
  enum stat_counter reason = c->tls.select_failure == CERTSELECT_NO_VALID_STAPLE ? STAT_HANDSHAKE_FAIL_NO_STAPLE
                    : c->tls.select_failure != CERTSELECT_OK ? STAT_HANDSHAKE_FAIL_NO_CERTIFICATE
                                                              : STAT_HANDSHAKE_FAIL_PROTOCOL;
  stat_add(&c->worker->stats, reason, 1);
  const char *why = c->tls.select_failure != CERTSELECT_OK
                        ? certselect_failure_text(c->tls.select_failure)
                        : tls_error_string();
  const char *sni = SSL_get_servername(c->tls.ssl, TLSEXT_NAMETYPE_host_name);
  log_info("%s:%u: TLS handshake failed (SNI %s): %s", c->client_ip, c->client_port,
           sni ? sni : "-", why);
  ERR_clear_error();
  conn_finish(c, "handshake failed"); /* sends the alert BoringSSL queued */
}

/* ---- the pump: ciphertext in, plaintext to the backend side, as far as it may go -----------*/

static bool consume_plain(struct conn *c) {
  if (c->tunnel) {
    backend_send_buf(c, c->plain);
    c->plain = NULL;
    return true;
  }
  size_t before = c->plain->off;
  http_client_data(c);
  return c->phase == CONN_OPEN && !c->finishing && (!c->plain || c->plain->off != before);
}

/* Reads one record's worth of plaintext into c->plain. False when there is nothing more. */
static bool read_plain(struct conn *c) {
  struct buf *b = buf_get(&c->worker->pool);
  int n = SSL_read(c->tls.ssl, b->data, BUF_SIZE);
  if (n > 0) {
    b->len = (size_t)n;
    c->plain = b;
    if (c->tunnel) c->exchange_bytes_in += (uint64_t)n; /* HTTP counts what it parses */
    return true;
  }
  buf_put(b);
  int err = SSL_get_error(c->tls.ssl, n);
  if (err == SSL_ERROR_WANT_READ) return false;
  if (err == SSL_ERROR_ZERO_RETURN) {
    client_eof_reached(c);
    return false;
  }
  log_info("%s:%u: TLS error from client: %s", c->client_ip, c->client_port, tls_error_string());
  conn_close(c, "TLS error");
  return false;
}

void client_pump(struct conn *c) {
  if (c->phase == CONN_HANDSHAKE) handshake_step(c);
  while (c->phase == CONN_OPEN && !c->client_eof && !c->finishing && !backend_congested(c)) {
    if (c->plain) {
      if (!consume_plain(c)) break;
    } else if (!read_plain(c)) {
      break;
    }
  }
  if (c->phase == CONN_CLOSING) return;
  client_flush(c);
  backend_flush(c);
  client_update_reading(c);
}
