#include "stapler/cert.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/asn1time.h"
#include "stapler/ocsp_cache.h"
#include "stapler/util.h"

#define MAX_PEM_BYTES (1024 * 1024)
#define MAX_CHAIN 10
#define MAX_STAPLE_BYTES (64 * 1024)

static void free_chain_x509(X509 **chain, size_t n) {
  for (size_t i = 0; i < n; i++) X509_free(chain[i]);
  free(chain);
}

/* Reads every CERTIFICATE block of a PEM file. */
static X509 **read_pem_chain(const char *path, size_t *count, struct strlist *errors) {
  uint8_t *data;
  size_t len;
  const char *why = read_file(path, &data, &len, MAX_PEM_BYTES);
  if (why) {
    strlist_add(errors, "%s: cannot read certificate file: %s", path, why);
    return NULL;
  }
  BIO *bio = BIO_new_mem_buf(data, (ssize_t)len);
  X509 **chain = xcalloc(MAX_CHAIN, sizeof *chain);
  size_t n = 0;
  X509 *x;
  while (n < MAX_CHAIN && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) chain[n++] = x;
  uint32_t err = ERR_peek_last_error();
  bool clean_end = ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  BIO_free(bio);
  free(data);
  if (n == 0 || (!clean_end && n < MAX_CHAIN)) {
    strlist_add(errors, "%s: %s", path,
                n == 0 ? "no PEM certificate found" : "a certificate block is damaged");
    free_chain_x509(chain, n);
    return NULL;
  }
  *count = n;
  return chain;
}

static EVP_PKEY *read_pem_key(const char *path, struct strlist *errors) {
  uint8_t *data;
  size_t len;
  const char *why = read_file(path, &data, &len, MAX_PEM_BYTES);
  if (why) {
    strlist_add(errors, "%s: cannot read key file: %s", path, why);
    return NULL;
  }
  BIO *bio = BIO_new_mem_buf(data, (ssize_t)len);
  EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  ERR_clear_error();
  BIO_free(bio);
  OPENSSL_cleanse(data, len);
  free(data);
  if (!key) strlist_add(errors, "%s: no PEM private key found (encrypted keys are not supported)",
                        path);
  return key;
}

/* Checked before anything is read from the leaf: an intermediate first would otherwise be
 * reported for what it lacks as a leaf (DNS names, the key). */
static bool check_chain_order(const char *label, X509 **chain, size_t n,
                              struct strlist *errors) {
  for (size_t i = 0; i + 1 < n; i++) {
    if (certinfo_issued_by(chain[i], chain[i + 1])) continue;
    if (certinfo_issued_by(chain[i + 1], chain[i]))
      strlist_add(errors,
                  "%s: the chain is in the wrong order: certificate %zu issued certificate %zu; "
                  "the file must hold the leaf first, then each issuer in order",
                  label, i + 1, i + 2);
    else
      strlist_add(errors,
                  "%s: certificate %zu is not issued by certificate %zu; the file must hold the "
                  "leaf first, then each issuer in order",
                  label, i + 1, i + 2);
    return false;
  }
  return true;
}

static bool to_buffers(struct cert *c, X509 **chain, size_t n) {
  c->chain = xcalloc(n, sizeof *c->chain);
  for (size_t i = 0; i < n; i++) {
    uint8_t *der = NULL;
    int len = i2d_X509(chain[i], &der);
    if (len <= 0) return false;
    if (i == 0) SHA256(der, (size_t)len, c->fingerprint);
    c->chain[i] = CRYPTO_BUFFER_new(der, (size_t)len, NULL);
    OPENSSL_free(der);
    if (!c->chain[i]) return false;
    c->chain_len++;
  }
  return true;
}

bool cert_within_validity(const struct cert *c, time_t now) {
  return now >= c->info.not_before && now <= c->info.not_after;
}

/* A warning, not an error: refusing one expired certificate would block every reload and
 * restart while it is being served anyway. */
static void warn_validity(const struct cert *c, time_t now, struct strlist *warnings) {
  char when[32];
  if (now < c->info.not_before) {
    format_utc(c->info.not_before, when, sizeof when);
    strlist_add(warnings, "%s: the certificate is not valid before %s; it is served only where "
                "no valid certificate for its names can be", c->label, when);
  } else if (now > c->info.not_after) {
    format_utc(c->info.not_after, when, sizeof when);
    strlist_add(warnings, "%s: the certificate expired at %s; it is served only where no valid "
                "certificate for its names can be: replace it", c->label, when);
  }
}

static bool key_matches(X509 *leaf, EVP_PKEY *key) {
  EVP_PKEY *pub = X509_get_pubkey(leaf);
  bool ok = pub && EVP_PKEY_cmp(pub, key) == 1;
  EVP_PKEY_free(pub);
  return ok;
}

/* Fills what is known about `c` from its chain, or reports what makes it unusable. */
static void check_cert(struct cert *c, X509 **chain, size_t chain_len, time_t now,
                       struct strlist *errors, struct strlist *warnings) {
  if (!check_chain_order(c->label, chain, chain_len, errors)) return;
  const char *err = certinfo_read(c->leaf, &c->info);
  if (err)
    strlist_add(errors, "%s: %s", c->label, err);
  else if (!key_matches(c->leaf, c->key))
    strlist_add(errors, "%s: the private key does not match the certificate", c->label);
  else if (!to_buffers(c, chain, chain_len))
    strlist_add(errors, "%s: cannot encode the certificate chain", c->label);
  else
    warn_validity(c, now, warnings);
}

struct cert *cert_from_x509(const char *label, X509 **chain, size_t chain_len, EVP_PKEY *key,
                            enum ocsp_policy policy, time_t now, struct strlist *errors,
                            struct strlist *warnings) {
  struct cert *c = xcalloc(1, sizeof *c);
  c->label = xstrdup(label);
  c->leaf = chain[0];
  X509_up_ref(c->leaf);
  c->issuer = chain_len > 1 ? chain[1] : NULL;
  if (c->issuer) X509_up_ref(c->issuer);
  c->issuer_source = c->issuer ? CERT_ISSUER_CHAIN : CERT_ISSUER_NONE;
  c->key = key;
  size_t errors_before = errors->count;
  check_cert(c, chain, chain_len, now, errors, warnings);
  ERR_clear_error();
  free_chain_x509(chain, chain_len);
  if (errors->count != errors_before) {
    cert_free(c);
    return NULL;
  }
  c->policy = c->info.must_staple ? OCSP_POLICY_MUST_STAPLE : policy;
  c->ocsp_url = c->info.ocsp_url ? xstrdup(c->info.ocsp_url) : NULL;
  return c;
}

static void load_static_staple(struct cert *c, const char *path, time_t now,
                               struct strlist *errors, struct strlist *warnings) {
  uint8_t *der;
  size_t len;
  const char *why = read_file(path, &der, &len, MAX_STAPLE_BYTES);
  if (why) {
    strlist_add(errors, "%s: cannot read OCSP response: %s", path, why);
    return;
  }
  struct ocsp_result r;
  enum ocsp_error verdict = cert_set_staple_der(c, der, len, now, &r);
  free(der);
  if (verdict == OCSP_OK) return;
  if (verdict == OCSP_ERR_EXPIRED || verdict == OCSP_ERR_NOT_YET_VALID ||
      verdict == OCSP_ERR_CERT_UNKNOWN)
    strlist_add(warnings, "%s: OCSP response not stapled: %s", path, r.detail);
  else
    strlist_add(errors, "%s: OCSP response refused for %s: %s", path, c->label, r.detail);
}

/* A leaf-only chain whose issuer an earlier run fetched from its caIssuers URL. The copy is
 * checked like a fetched one: it must have signed the leaf. */
static void load_cached_issuer(struct cert *c, const struct config_ocsp *o,
                               struct strlist *warnings) {
  uint8_t *der;
  size_t len;
  if (!o->fetch || !o->cache_dir || !c->info.ca_issuers_url ||
      !ocsp_cache_load_issuer(o->cache_dir, c, &der, &len))
    return;
  const uint8_t *p = der;
  X509 *issuer = d2i_X509(NULL, &p, (long)len);
  bool ok = issuer && p == der + len && certinfo_issued_by(c->leaf, issuer);
  ERR_clear_error();
  free(der);
  if (!ok) {
    X509_free(issuer);
    strlist_add(warnings, "%s: the cached issuer certificate did not sign this certificate; it "
                "is fetched again from %s", c->label, c->info.ca_issuers_url);
    return;
  }
  c->issuer = issuer;
  c->issuer_source = CERT_ISSUER_CACHE;
}

struct cert *cert_load(const struct config_cert *cc, const struct config_ocsp *ocsp, time_t now,
                       struct strlist *errors, struct strlist *warnings) {
  size_t n;
  X509 **chain = read_pem_chain(cc->cert, &n, errors);
  EVP_PKEY *key = read_pem_key(cc->key, errors);
  if (!chain || !key) {
    if (chain) free_chain_x509(chain, n);
    EVP_PKEY_free(key);
    return NULL;
  }
  struct cert *c = cert_from_x509(cc->cert, chain, n, key, ocsp->policy, now, errors, warnings);
  if (!c) return NULL;
  if (cc->ocsp_url) {
    free(c->ocsp_url);
    c->ocsp_url = xstrdup(cc->ocsp_url);
  }
  if (!c->issuer) load_cached_issuer(c, ocsp, warnings);
  size_t errors_before = errors->count;
  if (cc->ocsp_response) {
    if (!c->issuer)
      strlist_add(errors, "%s: an OCSP response needs the issuer certificate after the leaf",
                  cc->cert);
    else
      load_static_staple(c, cc->ocsp_response, now, errors, warnings);
  }
  if (errors->count != errors_before) {
    cert_free(c);
    return NULL;
  }
  return c;
}

enum ocsp_error cert_set_staple_der(struct cert *c, const uint8_t *der, size_t len, time_t now,
                                    struct ocsp_result *result) {
  if (!c->issuer) {
    memset(result, 0, sizeof *result);
    snprintf(result->detail, sizeof result->detail, "no issuer certificate in the chain");
    return OCSP_ERR_SIGNER_NOT_FOUND;
  }
  enum ocsp_error verdict = ocsp_verify(der, len, c->leaf, c->issuer, now, result);
  if (verdict != OCSP_OK) return verdict;
  if (result->status == OCSP_STATUS_UNKNOWN) {
    /* Some browsers fail hard on a stapled "unknown": never sent, as with fetched answers. */
    snprintf(result->detail, sizeof result->detail,
             "the responder does not know this certificate (status unknown)");
    return OCSP_ERR_CERT_UNKNOWN;
  }
  staple_unref(cert_swap_staple(c, staple_new(der, len, result)));
  return OCSP_OK;
}

void cert_short_id(const struct cert *c, char out[17]) {
  for (int i = 0; i < 8; i++) snprintf(out + 2 * i, 3, "%02x", c->fingerprint[i]);
}

void cert_free(struct cert *c) {
  if (!c) return;
  for (size_t i = 0; i < c->chain_len; i++) CRYPTO_BUFFER_free(c->chain[i]);
  free(c->chain);
  X509_free(c->leaf);
  X509_free(c->issuer);
  EVP_PKEY_free(c->key);
  certinfo_free(&c->info);
  free(c->ocsp_url);
  free(c->label);
  staple_unref(cert_staple(c));
  free(c);
}
