/* A config generation: the validated config, its certificates and the TLS context built from
 * them. Immutable and reference-counted; every connection holds the generation it started
 * with, so a reload never changes what an open connection sees. */
#ifndef STAPLER_GENERATION_H
#define STAPLER_GENERATION_H

#include <openssl/ssl.h>
#include <stdatomic.h>

#include "stapler/certstore.h"
#include "stapler/config.h"

struct generation {
  atomic_uint refs;
  unsigned id;
  struct config *cfg;
  struct certstore *certs;
  SSL_CTX *ssl_ctx;
};

/* Takes ownership of `cfg` and `certs` (also on failure). One reference on success. */
struct generation *generation_new(unsigned id, struct config *cfg, struct certstore *certs,
                                  struct strlist *errors);
/* Loads the config at `path` and everything it names. */
struct generation *generation_load(unsigned id, const char *path, time_t now,
                                   struct strlist *errors, struct strlist *warnings);
/* The embedded default with freshly generated self-signed certificates. */
struct generation *generation_default(time_t now, struct strlist *errors);

struct generation *generation_ref(struct generation *g);
void generation_unref(struct generation *g);

#endif
