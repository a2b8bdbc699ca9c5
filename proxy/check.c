#include "stapler/check.h"

#include <stdlib.h>
#include <strings.h>

#include "stapler/asn1time.h"
#include "stapler/generation.h"
#include "stapler/ocsp_cache.h"
#include "stapler/preflight.h"
#include "stapler/tickets.h"
#include "stapler/util.h"

static void print_staple(FILE *out, const struct cert *c, time_t now) {
  const struct staple *s = cert_staple(c);
  if (!s) {
    fprintf(out, "  staple:      %s\n", c->ocsp_url ? "none configured" : "none");
    return;
  }
  char until[32];
  format_utc(s->valid_until, until, sizeof until);
  fprintf(out, "  staple:      %s, valid until %s%s (%s)\n", ocsp_cert_status_name(s->status),
          until, s->valid_until < s->next_update ? " (its signer's certificate expires)" : "",
          staple_fresh(s, now) ? "fresh" : "expired");
}

/* The cached answer the proxy would start with, verified the same way. */
static void print_cached(FILE *out, const struct cert *c, const struct config_ocsp *o,
                         time_t now) {
  if (!o->fetch || !o->cache_dir || !c->ocsp_url) return;
  uint8_t *der;
  size_t len;
  if (!ocsp_cache_load(o->cache_dir, c, &der, &len)) {
    fprintf(out, "  cached:      none in %s\n", o->cache_dir);
    return;
  }
  struct ocsp_result r;
  enum ocsp_error err =
      c->issuer ? ocsp_verify(der, len, c->leaf, c->issuer, now, &r) : OCSP_ERR_SIGNER_NOT_FOUND;
  free(der);
  if (err != OCSP_OK) {
    fprintf(out, "  cached:      not usable (%s)\n", c->issuer ? r.detail : "no issuer");
    return;
  }
  char until[32];
  format_utc(r.valid_until, until, sizeof until);
  fprintf(out, "  cached:      %s, valid until %s\n", ocsp_cert_status_name(r.status), until);
}

/* Where the issuer needed for OCSP comes from. */
static void print_issuer(FILE *out, const struct cert *c, const struct config_ocsp *o) {
  char subject[256] = "";
  if (c->issuer) X509_NAME_oneline(X509_get_subject_name(c->issuer), subject, sizeof subject);
  if (c->issuer_source == CERT_ISSUER_CHAIN)
    fprintf(out, "  issuer:      %s, from the chain file\n", subject);
  else if (c->issuer_source == CERT_ISSUER_CACHE)
    fprintf(out, "  issuer:      %s, cached in %s, fetched from %s\n", subject, o->cache_dir,
            c->info.ca_issuers_url);
  else if (!c->ocsp_url)
    fprintf(out, "  issuer:      none: not in the chain file (not needed without an OCSP URL)\n");
  else if (c->info.ca_issuers_url && o->fetch)
    fprintf(out, "  issuer:      not in the chain file: fetched at start from %s\n",
            c->info.ca_issuers_url);
  else
    fprintf(out, "  issuer:      none: not in the chain file%s (OCSP cannot be used)\n",
            c->info.ca_issuers_url ? ", and ocsp.fetch is off" : ", and no caIssuers URL");
}

static void print_validity(FILE *out, const struct cert *c, time_t now) {
  char when[32];
  if (now < c->info.not_before) {
    format_utc(c->info.not_before, when, sizeof when);
    fprintf(out, "  valid from:  %s (NOT YET VALID)\n", when);
  }
  format_utc(c->info.not_after, when, sizeof when);
  if (now > c->info.not_after)
    fprintf(out, "  expires:     %s (EXPIRED %lld days ago)\n", when,
            (long long)(now - c->info.not_after) / 86400);
  else
    fprintf(out, "  expires:     %s (in %lld days)\n", when,
            (long long)(c->info.not_after - now) / 86400);
}

static void print_ocsp_url(FILE *out, const struct cert *c) {
  if (c->ocsp_url)
    fprintf(out, "  OCSP URL:    %s\n", c->ocsp_url);
  else if (c->info.ocsp_url_unusable)
    fprintf(out, "  OCSP URL:    %s (not used: %s; served unstapled unless ocsp_url: is set)\n",
            c->info.ocsp_url_unusable,
            strncasecmp(c->info.ocsp_url_unusable, "https://", 8) ? "not http://" : "https");
  else
    fprintf(out, "  OCSP URL:    none (normal: this certificate is served unstapled)\n");
}

static void print_cert(FILE *out, const struct cert *c, const struct config_ocsp *o, time_t now) {
  char key[32];
  certinfo_key_desc(&c->info, key, sizeof key);
  fprintf(out, "certificate %s\n", c->label);
  fprintf(out, "  names:      ");
  for (size_t i = 0; i < c->info.name_count; i++)
    fprintf(out, "%s%s", i ? ", " : " ", c->info.names[i]);
  fprintf(out, "\n  key:         %s\n", key);
  fprintf(out, "  chain:       %zu certificate(s)%s\n", c->chain_len,
          c->chain_len > 1 ? "" : " (the leaf alone)");
  print_issuer(out, c, o);
  print_validity(out, c, now);
  print_ocsp_url(out, c);
  fprintf(out, "  must-staple: %s\n", c->info.must_staple ? "yes (policy must-staple)" : "no");
  fprintf(out, "  policy:      %s\n", config_policy_name(c->policy));
  print_staple(out, c, now);
  print_cached(out, c, o, now);
}

int check_config(const char *path, FILE *out, FILE *err) {
  struct strlist errors = {0}, warnings = {0};
  time_t now = wall_now();
  struct generation *gen = generation_load(1, path, now, &errors, &warnings);
  if (gen && gen->cfg->tls.session_tickets && gen->cfg->tls.ticket_key_file) {
    char problem[512];
    struct ticket_keys *keys =
        tickets_load_file(gen->cfg->tls.ticket_key_file, problem, sizeof problem);
    if (keys)
      fprintf(out, "ticket keys %s: %zu key(s)\n", gen->cfg->tls.ticket_key_file, keys->count);
    else
      strlist_add(&errors, "%s", problem);
    tickets_free(keys);
    if (!keys) {
      generation_unref(gen);
      gen = NULL;
    }
  }
  if (gen) { /* what the start would meet on this machine */
    unsigned workers = config_worker_count(gen->cfg);
    preflight_fd_limit(gen->cfg, workers, util_raise_fd_limit(), &warnings);
    preflight_addresses(gen->cfg, &errors, &warnings);
    preflight_cache_dir(gen->cfg, &errors);
    if (errors.count) {
      generation_unref(gen);
      gen = NULL;
    }
  }
  for (size_t i = 0; i < warnings.count; i++) fprintf(err, "warning: %s\n", warnings.items[i]);
  for (size_t i = 0; i < errors.count; i++) fprintf(err, "error: %s\n", errors.items[i]);
  if (gen && gen->cfg->admin.enabled) fprintf(out, "admin http://%s/\n", gen->cfg->admin.addr.text);
  int rc = 1;
  if (gen) {
    const struct config *cfg = gen->cfg;
    for (size_t i = 0; i < cfg->listen_count; i++)
      fprintf(out, "listen %s%s\n", cfg->listen[i].addr.text,
              cfg->listen[i].proxy_protocol ? " (PROXY protocol expected)" : "");
    fprintf(out, "backend %s (%s mode)\n", cfg->backend.addr.text,
            cfg->backend.mode == BACKEND_MODE_TCP ? "tcp" : "http");
    for (size_t i = 0; i < gen->certs->cert_count; i++)
      print_cert(out, gen->certs->certs[i], &cfg->ocsp, now);
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
