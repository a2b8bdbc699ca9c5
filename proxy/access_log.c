#include "stapler/access_log.h"

#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "stapler/conn.h"
#include "stapler/generation.h"
#include "stapler/log.h"

#define PATH_MAX_LOGGED 512

static bool enabled(const struct conn *c) { return c->gen->cfg->log.access; }

static const char *cert_kind(const struct conn *c) {
  if (!c->tls.cert) return "-";
  return c->tls.cert->info.kind == KEY_KIND_ECDSA ? "ecdsa" : "rsa";
}

static void client_address(const struct conn *c, char *out, size_t cap) {
  snprintf(out, cap, strchr(c->client_ip, ':') ? "[%s]:%u" : "%s:%u", c->client_ip,
           c->client_port);
}

void access_log_exchange(const struct conn *c, int status) {
  if (!enabled(c)) return;
  const struct http1 *h = c->http;
  char client[INET6_ADDRSTRLEN + 16], path[PATH_MAX_LOGGED + 1] = "-";
  client_address(c, client, sizeof client);
  const char *method = "-";
  if (h && h->requests > 0 && h->req_head.target_len > 0) {
    size_t n = h->req_head.target_len < PATH_MAX_LOGGED ? h->req_head.target_len
                                                        : PATH_MAX_LOGGED;
    memcpy(path, h->req_head.text + h->req_head.target_off, n);
    path[n] = '\0';
    method = llhttp_method_name((llhttp_method_t)llhttp_get_method((llhttp_t *)&h->req));
  }
  uint64_t now = uv_now(c->client.loop);
  const struct log_field fields[] = {
      LOG_STR("client", client),
      LOG_STR("sni", SSL_get_servername(c->tls.ssl, TLSEXT_NAMETYPE_host_name)),
      LOG_STR("cert", cert_kind(c)),
      LOG_STR("tls", SSL_get_version(c->tls.ssl)),
      LOG_STR("method", method),
      LOG_STR("path", path),
      LOG_NUM("status", status),
      LOG_NUM("bytes_in", c->exchange_bytes_in),
      LOG_NUM("bytes_out", c->exchange_bytes_out),
      LOG_NUM("ms", now - c->exchange_started_at),
  };
  log_fields(LOG_INFO, "access", fields, sizeof fields / sizeof fields[0]);
}

void access_log_tunnel(const struct conn *c) {
  if (!enabled(c) || !c->tunnel) return;
  char client[INET6_ADDRSTRLEN + 16];
  client_address(c, client, sizeof client);
  uint64_t now = uv_now(c->client.loop);
  const struct log_field fields[] = {
      LOG_STR("client", client),
      LOG_STR("sni", SSL_get_servername(c->tls.ssl, TLSEXT_NAMETYPE_host_name)),
      LOG_STR("cert", cert_kind(c)),
      LOG_STR("tls", SSL_get_version(c->tls.ssl)),
      LOG_STR("mode", c->http ? "upgrade" : "tcp"),
      LOG_NUM("bytes_in", c->exchange_bytes_in),
      LOG_NUM("bytes_out", c->exchange_bytes_out),
      LOG_NUM("ms", now - c->exchange_started_at),
  };
  log_fields(LOG_INFO, "access", fields, sizeof fields / sizeof fields[0]);
}
