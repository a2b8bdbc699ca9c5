/* The PROXY protocol on a connection: reading the header a load balancer sends before TLS,
 * and writing one before the first bytes of each backend connection. */
#include <openssl/ssl.h>
#include <string.h>

#include "stapler/conn.h"
#include "stapler/generation.h"
#include "stapler/log.h"
#include "stapler/proxy_protocol.h"
#include "stapler/worker.h"

/* Collects `b` (taking it) until a whole header is there, then starts TLS on what follows. */
void proxy_header_received(struct conn *c, struct buf *b) {
  struct buf *h = c->proxy_header;
  if (!h) {
    c->proxy_header = h = b;
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
    stat_add(&c->worker->stats, STAT_PROXY_HEADER_FAILURES, 1);
    log_info("%s:%u: refused: %s (listen[].proxy_protocol is on for this address)",
             c->client_ip, c->client_port, error);
    conn_close(c, error);
    return;
  }
  if (!info.local) {
    client_set_address(c, (struct sockaddr *)&info.src);
    c->local_addr = info.dst;
  }
  c->proxy_header = NULL;
  c->phase = CONN_HANDSHAKE;
  h->off = used; /* TLS starts right after the header */
  if (h->off < h->len) {
    tls_feed(&c->tls, h);
    client_pump(c);
  } else {
    buf_put(h);
  }
}

/* Builds the header backend.proxy_protocol asks for. False when off or impossible. */
bool backend_proxy_header(struct conn *c, uint8_t *out, size_t cap, size_t *len) {
  enum proxy_protocol version = c->gen->cfg->backend.proxy_protocol;
  const struct sockaddr *src = (const struct sockaddr *)&c->client_addr;
  const struct sockaddr *dst = (const struct sockaddr *)&c->local_addr;
  if (version == PROXY_PROTOCOL_V1) {
    *len = pp_write_v1((char *)out, cap, src, dst);
  } else if (version == PROXY_PROTOCOL_V2) {
    const uint8_t *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c->tls.ssl, &alpn, &alpn_len);
    *len = pp_write_v2(out, cap, src, dst, alpn, alpn_len,
                       SSL_get_servername(c->tls.ssl, TLSEXT_NAMETYPE_host_name));
  } else {
    return false;
  }
  return *len > 0;
}
