/* The client side of a connection: reading ciphertext, driving BoringSSL, sending ciphertext. */
#include <openssl/err.h>
#include <stddef.h>

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
  c->client_inflight += n;
  c->worker->stats.bytes_to_client += n;
  conn_write(c, (uv_stream_t *)&c->client, chain, n, on_client_written);
}

void client_send(struct conn *c, const uint8_t *data, size_t len) {
  if (c->phase != CONN_OPEN || c->finishing) return;
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
    c->worker->stats.bytes_from_client += (uint64_t)nread;
    tls_feed(&c->tls, b);
    conn_touch(c);
    client_pump(c);
    return;
  }
  if (b) buf_put(b);
  if (nread == 0 || c->phase == CONN_CLOSING) return;
  if (c->phase == CONN_HANDSHAKE)
    conn_close(c, "client left during the handshake");
  else if (nread != UV_EOF)
    conn_close(c, uv_strerror((int)nread));
  else
    client_eof_reached(c);
}

void client_update_reading(struct conn *c) {
  if (c->phase == CONN_CLOSING) return;
  bool want = c->phase == CONN_HANDSHAKE ||
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

/* ---- handshake -----------------------------------------------------------------------------*/

static void count_handshake(struct conn *c) {
  struct stats *s = &c->worker->stats;
  if (c->tls.cert && c->tls.cert->info.kind == KEY_KIND_ECDSA)
    s->handshakes_ecdsa++;
  else
    s->handshakes_rsa++;
  if (SSL_version(c->tls.ssl) == TLS1_3_VERSION)
    s->handshakes_tls13++;
  else
    s->handshakes_tls12++;
  if (SSL_session_reused(c->tls.ssl)) s->handshakes_resumed++;
  if (c->tls.stapled) s->staples_sent++;
}

static void handshake_done(struct conn *c) {
  c->phase = CONN_OPEN;
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
  c->worker->stats.handshake_failures++;
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
