/* One configured certificate: its chain as CRYPTO_BUFFERs (what the handshake sends), the
 * private key, what we know about it, and its current staple. Created when a config is loaded
 * and owned by the certstore built from it. */
#ifndef STAPLER_CERT_H
#define STAPLER_CERT_H

#include <openssl/base.h>
#include <openssl/pool.h>
#include <openssl/x509.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "stapler/certinfo.h"
#include "stapler/config.h"
#include "stapler/staple.h"
#include "stapler/strlist.h"

#define CERT_COUNTER_SLOTS 16
/* Where a certificate's issuer (needed for OCSP) came from. */
enum cert_issuer_source {
  CERT_ISSUER_NONE,  /* not known yet: the chain file holds the leaf alone */
  CERT_ISSUER_CHAIN, /* the certificate after the leaf in the chain file */
  CERT_ISSUER_CACHE, /* fetched earlier from the leaf's caIssuers URL (see stapling.h) */
};

struct cert {
  char *label;            /* the cert file path, or a name for generated ones */
  struct cert_info info;
  CRYPTO_BUFFER **chain;  /* leaf first */
  size_t chain_len;
  X509 *leaf;
  X509 *issuer;           /* see issuer_source; NULL when none is known */
  enum cert_issuer_source issuer_source;
  EVP_PKEY *key;
  char *ocsp_url;         /* config override, else the AIA URL, else NULL */
  enum ocsp_policy policy; /* effective: must-staple certificates always get must-staple */
  uint8_t fingerprint[32]; /* SHA-256 of the leaf DER */
  /* The current verified staple, or NULL. Replaced by the control thread while workers read
   * it (see qsbr.h); read it with cert_staple(). */
  _Atomic(struct staple *) staple;
  /* Staples sent, one cache line per worker (workers beyond CERT_COUNTER_SLOTS share), so no
   * two workers write one line on the handshake path; readers sum them. The padding comes
   * first: each counter is 64 bytes past the one before it, the first 64 past `staple`,
   * which every handshake reads. */
  struct cert_counter {
    char pad[64 - sizeof(uint64_t)];
    _Atomic uint64_t v;
  } staples_sent[CERT_COUNTER_SLOTS];
};

static inline void cert_count_staple(const struct cert *c, unsigned worker_id) {
  struct cert_counter *slot =
      &((struct cert *)c)->staples_sent[worker_id % CERT_COUNTER_SLOTS];
  atomic_fetch_add_explicit(&slot->v, 1, memory_order_relaxed);
}

static inline uint64_t cert_staples_sent(const struct cert *c) {
  uint64_t sum = 0;
  for (unsigned i = 0; i < CERT_COUNTER_SLOTS; i++)
    sum += atomic_load_explicit(&((struct cert *)c)->staples_sent[i].v, memory_order_relaxed);
  return sum;
}

static inline struct staple *cert_staple(const struct cert *c) {
  return atomic_load_explicit(&((struct cert *)c)->staple, memory_order_seq_cst);
}

/* Installs `s` (taking its reference) and returns the previous staple, which the caller
 * releases once no worker can be reading it. */
static inline struct staple *cert_swap_staple(struct cert *c, struct staple *s) {
  return atomic_exchange_explicit(&c->staple, s, memory_order_seq_cst);
}

/* Loads cert, key and optional static staple named by `cc`, checking that the key matches and
 * that each chain certificate issues the one before it. A leaf outside its validity is a warning:
 * it is still served where no valid certificate for its names can be (see certselect.h). A chain
 * of the leaf alone takes the issuer cached from its caIssuers URL when `ocsp` fetches and there
 * is one. Problems go to `errors` (fatal) or `warnings`. */
struct cert *cert_load(const struct config_cert *cc, const struct config_ocsp *ocsp, time_t now,
                       struct strlist *errors, struct strlist *warnings);

/* Builds a cert from parsed objects; takes ownership of `chain` (array and X509s) and `key`. */
struct cert *cert_from_x509(const char *label, X509 **chain, size_t chain_len, EVP_PKEY *key,
                            enum ocsp_policy policy, time_t now, struct strlist *errors,
                            struct strlist *warnings);

/* Whether `now` is within the leaf's notBefore..notAfter. */
bool cert_within_validity(const struct cert *c, time_t now);

void cert_free(struct cert *c);

/* Verifies `der` for this certificate and, when it may be stapled, makes it the current
 * staple. Only while no worker uses the certificate (loading). Returns the verdict; `result`
 * explains it. A verified "unknown" answer is OCSP_ERR_CERT_UNKNOWN and not stapled. */
enum ocsp_error cert_set_staple_der(struct cert *c, const uint8_t *der, size_t len, time_t now,
                                    struct ocsp_result *result);

/* Hex of the first bytes of the fingerprint, for logs. */
void cert_short_id(const struct cert *c, char out[17]);

#endif
