/* Names to certificates: for each DNS name, up to one RSA and one ECDSA certificate.
 * Built once per config generation and read-only afterwards, so any thread may look up. */
#ifndef STAPLER_CERTSTORE_H
#define STAPLER_CERTSTORE_H

#include <stddef.h>

#include "stapler/cert.h"

struct cert_pair {
  struct cert *rsa;
  struct cert *ecdsa;
};

struct certstore {
  struct cert **certs; /* owned */
  size_t cert_count;
  struct name_entry *names; /* sorted by name */
  size_t name_count;
  const struct cert_pair *default_pair;
  char *default_name;
};

/* Loads every certificate of `cfg`. NULL when any is unusable; problems go to `errors`. */
struct certstore *certstore_load(const struct config *cfg, time_t now, struct strlist *errors,
                                 struct strlist *warnings);

/* Builds the index over `certs` (ownership moves to the store). `default_name` may be NULL:
 * then the first certificate's first name is the default. */
struct certstore *certstore_build(struct cert **certs, size_t count, const char *default_name,
                                  struct strlist *errors);

void certstore_free(struct certstore *store);

/* The certificates that may answer for one name, best first. */
struct cert_candidates {
  const struct cert_pair *pairs[2];
  size_t count;
};

/* For SNI `sni` (may be NULL): the exact name's certificates, then the wildcard's (one label),
 * so that a wildcard serves the clients the exact name's cannot; the default name's when
 * neither exists. Never empty. */
void certstore_lookup(const struct certstore *store, const char *sni,
                      struct cert_candidates *out);

#endif
