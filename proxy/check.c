#include "stapler/check.h"

#include "stapler/asn1time.h"
#include "stapler/generation.h"
#include "stapler/util.h"

static void print_staple(FILE *out, const struct cert *c, time_t now) {
  if (!c->staple) {
    fprintf(out, "  staple:      none%s\n",
            c->ocsp_url ? " yet (fetched at start-up when ocsp.fetch is on)" : "");
    return;
  }
  char next[32];
  format_utc(c->staple->next_update, next, sizeof next);
  fprintf(out, "  staple:      %s, valid until %s (%s)\n", ocsp_cert_status_name(c->staple->status),
          next, staple_fresh(c->staple, now) ? "fresh" : "expired");
}

static void print_cert(FILE *out, const struct cert *c, time_t now) {
  char key[32], until[32];
  certinfo_key_desc(&c->info, key, sizeof key);
  format_utc(c->info.not_after, until, sizeof until);
  fprintf(out, "certificate %s\n", c->label);
  fprintf(out, "  names:      ");
  for (size_t i = 0; i < c->info.name_count; i++)
    fprintf(out, "%s%s", i ? ", " : " ", c->info.names[i]);
  fprintf(out, "\n  key:         %s\n", key);
  fprintf(out, "  chain:       %zu certificate(s)%s\n", c->chain_len,
          c->issuer ? "" : " (no issuer included: OCSP cannot be used)");
  fprintf(out, "  expires:     %s (in %lld days)\n", until,
          (long long)(c->info.not_after - now) / 86400);
  fprintf(out, "  OCSP URL:    %s\n",
          c->ocsp_url ? c->ocsp_url : "none (normal: this certificate is served unstapled)");
  fprintf(out, "  must-staple: %s\n", c->info.must_staple ? "yes (policy must-staple)" : "no");
  fprintf(out, "  policy:      %s\n", config_policy_name(c->policy));
  print_staple(out, c, now);
}

int check_config(const char *path, FILE *out, FILE *err) {
  struct strlist errors = {0}, warnings = {0};
  time_t now = wall_now();
  struct generation *gen = generation_load(1, path, now, &errors, &warnings);
  for (size_t i = 0; i < warnings.count; i++) fprintf(err, "warning: %s\n", warnings.items[i]);
  for (size_t i = 0; i < errors.count; i++) fprintf(err, "error: %s\n", errors.items[i]);
  int rc = 1;
  if (gen) {
    const struct config *cfg = gen->cfg;
    for (size_t i = 0; i < cfg->listen_count; i++)
      fprintf(out, "listen %s%s\n", cfg->listen[i].addr.text,
              cfg->listen[i].proxy_protocol ? " (PROXY protocol expected)" : "");
    fprintf(out, "backend %s (%s mode)\n", cfg->backend.addr.text,
            cfg->backend.mode == BACKEND_MODE_TCP ? "tcp" : "http");
    for (size_t i = 0; i < gen->certs->cert_count; i++) print_cert(out, gen->certs->certs[i], now);
    fprintf(out, "default name %s\n", gen->certs->default_name);
    fprintf(out, "%s: configuration OK\n", path);
    generation_unref(gen);
    rc = 0;
  } else {
    fprintf(err, "%s: %zu problem(s); nothing was started\n", path, errors.count);
  }
  strlist_free(&errors);
  strlist_free(&warnings);
  return rc;
}
