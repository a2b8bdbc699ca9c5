#include "stapler/generation.h"

#include <stdlib.h>

#include "stapler/selfsigned.h"
#include "stapler/tls.h"
#include "stapler/util.h"

struct generation *generation_new(unsigned id, struct config *cfg, struct certstore *certs,
                                  struct strlist *errors) {
  struct generation *g = xcalloc(1, sizeof *g);
  atomic_init(&g->refs, 1);
  g->id = id;
  g->cfg = cfg;
  g->certs = certs;
  g->ssl_ctx = tls_ctx_new(cfg, errors);
  if (!g->ssl_ctx) {
    generation_unref(g);
    return NULL;
  }
  return g;
}

struct generation *generation_load(unsigned id, const char *path, time_t now,
                                   struct strlist *errors, struct strlist *warnings) {
  struct config *cfg = config_load(path, errors);
  if (!cfg) return NULL;
  struct certstore *certs = certstore_load(cfg, now, errors, warnings);
  if (!certs) {
    config_free(cfg);
    return NULL;
  }
  return generation_new(id, cfg, certs, errors);
}

struct generation *generation_default(time_t now, struct strlist *errors) {
  struct config *cfg = config_default();
  struct cert **certs = xcalloc(2, sizeof *certs);
  certs[0] = selfsigned_make(KEY_KIND_ECDSA, "localhost", now, errors);
  certs[1] = selfsigned_make(KEY_KIND_RSA, "localhost", now, errors);
  struct certstore *store = NULL;
  if (certs[0] && certs[1]) {
    store = certstore_build(certs, 2, cfg->default_name, errors);
  } else {
    cert_free(certs[0]);
    cert_free(certs[1]);
    free(certs);
  }
  if (!store) {
    config_free(cfg);
    return NULL;
  }
  return generation_new(1, cfg, store, errors);
}

struct generation *generation_ref(struct generation *g) {
  atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
  return g;
}

void generation_unref(struct generation *g) {
  if (!g || atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1) return;
  SSL_CTX_free(g->ssl_ctx);
  certstore_free(g->certs);
  config_free(g->cfg);
  free(g);
}
