#include "stapler/access_log.h"

#include <openssl/ssl.h>
#include <string.h>

#include "stapler/exchange.h"
#include "stapler/generation.h"
#include "stapler/log.h"
#include "stapler/session.h"
#include "stapler/worker.h"

#define PATH_MAX_LOGGED 512

static bool enabled(const struct session *s) { return s->gen->cfg->log.access; }

static const char *cert_kind(const struct session *s) {
  if (!s->tls.cert) return "-";
  return s->tls.cert->info.kind == KEY_KIND_ECDSA ? "ecdsa" : "rsa";
}

void access_log_exchange(const struct session *s, const struct exchange_record *r,
                         const struct http_head *req, const char *protocol) {
  if (!enabled(s)) return;
  char client[INET6_ADDRSTRLEN + 16], path[PATH_MAX_LOGGED + 1] = "-", method[32] = "-";
  session_client_address(s, client, sizeof client);
  if (req && req->target_len > 0) {
    size_t n = MIN(req->target_len, (size_t)PATH_MAX_LOGGED);
    memcpy(path, http_head_target(req), n);
    path[n] = '\0';
  }
  if (req && req->method_len > 0) {
    size_t n = MIN(req->method_len, sizeof method - 1);
    memcpy(method, req->text + req->method_off, n);
    method[n] = '\0';
  }
  uint64_t now = uv_now(&s->worker->loop);
  const struct log_field fields[] = {
      LOG_STR("client", client),
      LOG_STR("sni", session_sni(s)),
      LOG_STR("cert", cert_kind(s)),
      LOG_STR("tls", SSL_get_version(s->tls.ssl)),
      LOG_STR("proto", protocol),
      LOG_STR("method", method),
      LOG_STR("path", path),
      LOG_NUM("status", r->status),
      LOG_STR("upstream", r->forwarded ? s->gen->cfg->backend.addr.text : "-"),
      LOG_NUM("bytes_in", r->bytes_in),
      LOG_NUM("bytes_out", r->bytes_out),
      LOG_NUM("ms", now - r->started_at),
  };
  log_fields(LOG_INFO, "access", fields, sizeof fields / sizeof fields[0]);
}

void access_log_tunnel(const struct session *s, const struct exchange_record *r,
                       const char *mode) {
  if (!enabled(s)) return;
  char client[INET6_ADDRSTRLEN + 16];
  session_client_address(s, client, sizeof client);
  uint64_t now = uv_now(&s->worker->loop);
  const struct log_field fields[] = {
      LOG_STR("client", client),
      LOG_STR("sni", session_sni(s)),
      LOG_STR("cert", cert_kind(s)),
      LOG_STR("tls", SSL_get_version(s->tls.ssl)),
      LOG_STR("mode", mode),
      LOG_NUM("bytes_in", r->bytes_in),
      LOG_NUM("bytes_out", r->bytes_out),
      LOG_NUM("ms", now - r->started_at),
  };
  log_fields(LOG_INFO, "access", fields, sizeof fields / sizeof fields[0]);
}
