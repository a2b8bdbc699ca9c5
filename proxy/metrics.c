#include "stapler/metrics.h"

#include <openssl/ssl.h>

#include "stapler/asn1time.h"
#include "stapler/log.h"
#include "stapler/server.h"
#include "stapler/util.h"

static uint64_t sum(const struct server *s, enum stat_counter k) {
  uint64_t total = 0;
  for (unsigned i = 0; i < s->worker_count; i++) total += stat_get(&s->workers[i].stats, k);
  return total;
}

static void family(struct strbuf *b, const char *name, const char *type, const char *help) {
  strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(struct strbuf *b, const char *name, const char *labels, uint64_t v) {
  strbuf_printf(b, "%s%s%s%s %llu\n", name, labels ? "{" : "", labels ? labels : "",
                labels ? "}" : "", (unsigned long long)v);
}

static void counter(struct strbuf *b, const struct server *s, const char *name, const char *help,
                    enum stat_counter k) {
  family(b, name, "counter", help);
  sample(b, name, NULL, sum(s, k));
}

/* A counter family with one label over several stats. */
static void labelled(struct strbuf *b, const struct server *s, const char *name,
                     const char *help, const char *label, const char *const *values,
                     const enum stat_counter *stats, size_t n) {
  family(b, name, "counter", help);
  for (size_t i = 0; i < n; i++) {
    char l[96];
    snprintf(l, sizeof l, "%s=\"%s\"", label, values[i]);
    sample(b, name, l, sum(s, stats[i]));
  }
}

/* certificate="path",key="rsa", label values escaped as Prometheus wants, whatever their
 * length. */
static void cert_labels(const struct cert *c, struct strbuf *out) {
  strbuf_printf(out, "certificate=\"");
  for (const char *p = c->label; *p; p++) {
    if (*p == '\n')
      strbuf_printf(out, "\\n");
    else
      strbuf_printf(out, *p == '\\' || *p == '"' ? "\\%c" : "%c", *p);
  }
  strbuf_printf(out, "\",key=\"%s\"", c->info.kind == KEY_KIND_ECDSA ? "ecdsa" : "rsa");
}

static const char *staple_state(const struct cert *c, time_t now) {
  const struct staple *st = cert_staple(c);
  if (!st) return "none";
  if (!staple_fresh(st, now)) return "expired";
  return ocsp_cert_status_name(st->status);
}

static void render_traffic(const struct server *s, struct strbuf *b) {
  family(b, "stapler_connections_open", "gauge", "Client connections open now.");
  sample(b, "stapler_connections_open", NULL, server_open_connections(s));
  counter(b, s, "stapler_connections_accepted_total", "Client connections accepted.",
          STAT_ACCEPTED);
  counter(b, s, "stapler_connections_rejected_total",
          "Client connections closed at once because limits.max_connections was reached.",
          STAT_REJECTED);
  counter(b, s, "stapler_accept_pauses_total",
          "Times accepting stopped for 500 ms because the process had no file descriptor left.",
          STAT_ACCEPT_PAUSES);
  counter(b, s, "stapler_backend_no_fd_total",
          "Backend connections not opened because the process had no file descriptor left.",
          STAT_BACKEND_NO_FD);
  static const char *const kinds[] = {"rsa", "ecdsa"};
  static const enum stat_counter kind_stats[] = {STAT_HANDSHAKES_RSA, STAT_HANDSHAKES_ECDSA};
  labelled(b, s, "stapler_tls_handshakes_total", "Completed TLS handshakes by certificate type.",
           "certificate", kinds, kind_stats, 2);
  static const char *const versions[] = {"1.2", "1.3"};
  static const enum stat_counter version_stats[] = {STAT_HANDSHAKES_TLS12, STAT_HANDSHAKES_TLS13};
  labelled(b, s, "stapler_tls_versions_total", "Completed TLS handshakes by version.", "version",
           versions, version_stats, 2);
  counter(b, s, "stapler_tls_resumed_total", "Handshakes that resumed a session (tickets).",
          STAT_HANDSHAKES_RESUMED);
  static const char *const reasons[] = {"timeout", "no_certificate", "no_staple", "bad_sni",
                                        "protocol"};
  static const enum stat_counter reason_stats[] = {
      STAT_HANDSHAKE_FAIL_TIMEOUT, STAT_HANDSHAKE_FAIL_NO_CERTIFICATE,
      STAT_HANDSHAKE_FAIL_NO_STAPLE, STAT_HANDSHAKE_FAIL_BAD_SNI, STAT_HANDSHAKE_FAIL_PROTOCOL};
  labelled(b, s, "stapler_tls_handshake_failures_total", "Failed TLS handshakes by reason.",
           "reason", reasons, reason_stats, ARRAY_SIZE(reasons));
  counter(b, s, "stapler_proxy_protocol_failures_total",
          "Connections closed for a missing or malformed PROXY protocol header.",
          STAT_PROXY_HEADER_FAILURES);
  static const char *const protocols[] = {"http/1.1", "h2"};
  static const enum stat_counter protocol_stats[] = {STAT_REQUESTS, STAT_REQUESTS_H2};
  labelled(b, s, "stapler_http_requests_total", "HTTP requests by client protocol.",
           "protocol", protocols, protocol_stats, 2);
  counter(b, s, "stapler_http2_abuse_total",
          "HTTP/2 connections closed for abusive frames (floods of frames that cost the "
          "server and give the client nothing).", STAT_H2_ABUSE);
  static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  static const enum stat_counter class_stats[] = {STAT_RESPONSES_1XX, STAT_RESPONSES_2XX,
                                          STAT_RESPONSES_3XX, STAT_RESPONSES_4XX,
                                          STAT_RESPONSES_5XX};
  labelled(b, s, "stapler_http_responses_total", "HTTP responses by status class.", "class",
           classes, class_stats, 5);
  counter(b, s, "stapler_http_errors_generated_total",
          "Responses stapler made itself (400, 405, 408, 431, 502, 504).", STAT_ERRORS_SENT);
  static const char *const backend[] = {"connect_failed", "connect_timeout", "response_timeout",
                                        "broken"};
  static const enum stat_counter backend_stats[] = {STAT_BACKEND_CONNECT_FAILURES,
                                            STAT_BACKEND_CONNECT_TIMEOUTS,
                                            STAT_BACKEND_RESPONSE_TIMEOUTS, STAT_BACKEND_BROKEN};
  labelled(b, s, "stapler_backend_errors_total", "Backend failures by kind.", "kind", backend,
           backend_stats, 4);
  counter(b, s, "stapler_client_bytes_received_total", "Bytes received from clients (TLS).",
          STAT_BYTES_FROM_CLIENT);
  counter(b, s, "stapler_client_bytes_sent_total", "Bytes sent to clients (TLS).",
          STAT_BYTES_TO_CLIENT);
  counter(b, s, "stapler_ocsp_staples_sent_total", "Handshakes that carried a staple.",
          STAT_STAPLES_SENT);
}

/* One line (or two) of a per-certificate family; `l` holds the certificate's labels. */
typedef void cert_row_fn(struct strbuf *b, const char *name, const struct stapling_job *j,
                         const char *l, time_t now);

static void expiry_row(struct strbuf *b, const char *name, const struct stapling_job *j,
                       const char *l, time_t now) {
  (void)now;
  strbuf_printf(b, "%s{%s} %lld\n", name, l, (long long)j->cert->info.not_after);
}

static void expiry_seconds_row(struct strbuf *b, const char *name, const struct stapling_job *j,
                               const char *l, time_t now) {
  strbuf_printf(b, "%s{%s} %lld\n", name, l, (long long)(j->cert->info.not_after - now));
}

static void state_row(struct strbuf *b, const char *name, const struct stapling_job *j,
                      const char *l, time_t now) {
  strbuf_printf(b, "%s{%s,state=\"%s\"} 1\n", name, l, staple_state(j->cert, now));
}

static void next_update_row(struct strbuf *b, const char *name, const struct stapling_job *j,
                            const char *l, time_t now) {
  const struct staple *sp = cert_staple(j->cert);
  if (sp) strbuf_printf(b, "%s{%s} %lld\n", name, l, (long long)(sp->valid_until - now));
}

static void staples_sent_row(struct strbuf *b, const char *name, const struct stapling_job *j,
                             const char *l, time_t now) {
  (void)now;
  sample(b, name, l, cert_staples_sent(j->cert));
}

static void fetches_row(struct strbuf *b, const char *name, const struct stapling_job *j,
                        const char *l, time_t now) {
  (void)now;
  strbuf_printf(b, "%s{%s,result=\"ok\"} %llu\n", name, l, (unsigned long long)j->fetches_ok);
  strbuf_printf(b, "%s{%s,result=\"failed\"} %llu\n", name, l,
                (unsigned long long)j->fetches_failed);
}

static void failures_row(struct strbuf *b, const char *name, const struct stapling_job *j,
                         const char *l, time_t now) {
  (void)now;
  sample(b, name, l, j->failures);
}

/* A family over all certificates: Prometheus wants each family's samples in one group. */
static void per_certificate(struct strbuf *b, const struct server *s, const char *name,
                            const char *type, const char *help, cert_row_fn *row) {
  family(b, name, type, help);
  time_t now = wall_now();
  struct strbuf labels = {0};
  for (const struct stapling_job *j = s->stapling.jobs; j; j = j->next) {
    labels.len = 0;
    cert_labels(j->cert, &labels);
    row(b, name, j, labels.data, now);
  }
  strbuf_free(&labels);
}

static void render_certificates(const struct server *s, struct strbuf *b) {
  per_certificate(b, s, "stapler_certificate_expiry_timestamp_seconds", "gauge",
                  "When each certificate expires (Unix time).", expiry_row);
  per_certificate(b, s, "stapler_certificate_expiry_seconds", "gauge",
                  "Seconds until each certificate expires (negative: expired).",
                  expiry_seconds_row);
  per_certificate(b, s, "stapler_ocsp_staple_info", "gauge",
                  "1 for each certificate's staple state (none, good, revoked, expired).",
                  state_row);
  per_certificate(b, s, "stapler_ocsp_staple_seconds_to_next_update", "gauge",
                  "Seconds until the staple in use expires: its nextUpdate, or its delegated "
                  "signer's notAfter when earlier (negative: expired).",
                  next_update_row);
  per_certificate(b, s, "stapler_ocsp_certificate_staples_sent_total", "counter",
                  "Handshakes that carried this certificate's staple.", staples_sent_row);
  per_certificate(b, s, "stapler_ocsp_fetches_total", "counter", "OCSP fetches by result.",
                  fetches_row);
  per_certificate(b, s, "stapler_ocsp_consecutive_failures", "gauge",
                  "Failed fetches since the last success.", failures_row);
}

void metrics_render(const struct server *s, struct strbuf *b) {
  render_traffic(s, b);
  render_certificates(s, b);
  family(b, "stapler_config_generation", "gauge", "Configurations loaded (1 + good reloads).");
  sample(b, "stapler_config_generation", NULL, s->gen->id);
  family(b, "stapler_reloads_total", "counter", "SIGHUP reloads by result.");
  sample(b, "stapler_reloads_total", "result=\"ok\"", s->reloads_ok);
  sample(b, "stapler_reloads_total", "result=\"failed\"", s->reloads_failed);
  family(b, "stapler_workers", "gauge", "Worker threads.");
  sample(b, "stapler_workers", NULL, s->worker_count);
  size_t pool_free = 0, pool_used = 0;
  for (unsigned i = 0; i < s->worker_count; i++) {
    pool_free += bufpool_free_count(&s->workers[i].pool);
    pool_used += bufpool_in_use(&s->workers[i].pool);
  }
  family(b, "stapler_buffer_pool_bytes", "gauge",
         "I/O buffers held by the workers: in use, or free and kept for reuse.");
  sample(b, "stapler_buffer_pool_bytes", "state=\"in_use\"", pool_used * BUF_SIZE);
  sample(b, "stapler_buffer_pool_bytes", "state=\"free\"", pool_free * BUF_SIZE);
  family(b, "stapler_log_lines_dropped_total", "counter",
         "Log lines dropped because stderr could not keep up.");
  sample(b, "stapler_log_lines_dropped_total", NULL, log_dropped());
  struct strbuf scratch = {0};
  bool healthy = metrics_health(s, &scratch);
  strbuf_free(&scratch);
  family(b, "stapler_healthy", "gauge", "1 when /healthz answers 200.");
  sample(b, "stapler_healthy", NULL, healthy);
}

bool metrics_health(const struct server *s, struct strbuf *out) {
  size_t start = out->len;
  time_t now = wall_now();
  if (s->stopping) strbuf_printf(out, "stopping; ");
  for (const struct stapling_job *j = s->stapling.jobs; j; j = j->next) {
    const struct cert *c = j->cert;
    const struct staple *st = cert_staple(c);
    char when[32];
    if (now > c->info.not_after) {
      format_utc(c->info.not_after, when, sizeof when);
      strbuf_printf(out, "%s expired at %s; ", c->label, when);
    } else if (now < c->info.not_before) {
      format_utc(c->info.not_before, when, sizeof when);
      strbuf_printf(out, "%s is not valid before %s; ", c->label, when);
    }
    if (st && st->status == OCSP_STATUS_REVOKED && staple_fresh(st, now))
      strbuf_printf(out, "%s is revoked; ", c->label);
    else if (c->policy == OCSP_POLICY_MUST_STAPLE && !staple_fresh(st, now))
      strbuf_printf(out, "%s has no valid staple (must-staple); ", c->label);
  }
  bool healthy = out->len == start;
  if (healthy)
    strbuf_printf(out, "ok\n");
  else
    out->data[out->len - 1] = '\n';
  return healthy;
}

static void json_time(struct strbuf *b, const char *key, time_t t) {
  char when[32];
  format_utc(t, when, sizeof when);
  strbuf_printf(b, "\"%s\":\"%s\"", key, when);
}

/* Where the issuer used for OCSP comes from. */
static const char *issuer_origin(const struct stapling_job *j) {
  if (j->cert->issuer_source == CERT_ISSUER_CHAIN) return "chain";
  if (j->cert->issuer_source == CERT_ISSUER_CACHE) return "cached";
  return j->issuer ? "fetched" : "none";
}

static void status_certificate(struct strbuf *b, const struct stapling_job *j, time_t now) {
  const struct cert *c = j->cert;
  strbuf_printf(b, "{\"file\":");
  strbuf_json_string(b, c->label);
  strbuf_printf(b, ",\"names\":[");
  for (size_t i = 0; i < c->info.name_count; i++) {
    if (i) strbuf_printf(b, ",");
    strbuf_json_string(b, c->info.names[i]);
  }
  strbuf_printf(b, "],\"key\":\"%s\",", c->info.kind == KEY_KIND_ECDSA ? "ecdsa" : "rsa");
  json_time(b, "not_after", c->info.not_after);
  strbuf_printf(b, ",\"ocsp_url\":");
  if (c->ocsp_url)
    strbuf_json_string(b, c->ocsp_url);
  else
    strbuf_printf(b, "null");
  strbuf_printf(b, ",\"policy\":\"%s\",\"must_staple\":%s,\"issuer\":\"%s\",\"staple\":",
                config_policy_name(c->policy), c->info.must_staple ? "true" : "false",
                issuer_origin(j));
  const struct staple *st = cert_staple(c);
  if (st) {
    strbuf_printf(b, "{\"state\":\"%s\",", staple_state(c, now));
    json_time(b, "this_update", st->this_update);
    strbuf_printf(b, ",");
    json_time(b, "next_update", st->next_update);
    strbuf_printf(b, ",");
    json_time(b, "valid_until", st->valid_until);
    strbuf_printf(b, ",\"age_seconds\":%lld,\"seconds_to_next_update\":%lld}",
                  (long long)(now - st->this_update), (long long)(st->valid_until - now));
  } else {
    strbuf_printf(b, "null");
  }
  strbuf_printf(b, ",\"fetch\":{\"ok\":%llu,\"failed\":%llu,\"consecutive_failures\":%u,"
                   "\"last_error\":",
                (unsigned long long)j->fetches_ok, (unsigned long long)j->fetches_failed,
                j->failures);
  if (j->last_error[0])
    strbuf_json_string(b, j->last_error);
  else
    strbuf_printf(b, "null");
  strbuf_printf(b, ",\"next_attempt\":");
  if (j->scheduled && !j->fetch) {
    char when[32];
    format_utc(j->next_attempt, when, sizeof when);
    strbuf_printf(b, "\"%s\"", when);
  } else {
    strbuf_printf(b, "null");
  }
  strbuf_printf(b, "}}");
}

void metrics_status_json(const struct server *s, struct strbuf *b) {
  time_t now = wall_now();
  struct strbuf health = {0};
  bool healthy = metrics_health(s, &health);
  if (health.len) health.data[health.len - 1] = '\0';
  strbuf_printf(b, "{\"version\":\"%s\",\"generation\":%u,\"workers\":%u,"
                   "\"connections_open\":%zu,\"healthy\":%s,\"health\":",
                STAPLER_VERSION, s->gen->id, s->worker_count,
                server_open_connections(s), healthy ? "true" : "false");
  strbuf_json_string(b, health.data);
  strbuf_free(&health);
  strbuf_printf(b, ",\"certificates\":[");
  for (const struct stapling_job *j = s->stapling.jobs; j; j = j->next) {
    status_certificate(b, j, now);
    if (j->next) strbuf_printf(b, ",");
  }
  strbuf_printf(b, "]}\n");
}
