/* What stapler needs to know about a certificate: names, key, validity, OCSP URL, must-staple. */
#ifndef STAPLER_CERTINFO_H
#define STAPLER_CERTINFO_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum key_kind { KEY_KIND_RSA, KEY_KIND_ECDSA };

struct cert_info {
  enum key_kind kind;
  int key_bits;
  int curve_nid;    /* ECDSA only: NID_X9_62_prime256v1 or NID_secp384r1 */
  char **names;     /* lowercased DNS names from subjectAltName; the subject CN only when the
                       certificate has no subjectAltName extension at all (RFC 6125 6.4.4) */
  size_t name_count;
  time_t not_before, not_after;
  char *ocsp_url;   /* first http:// OCSP URL in authorityInfoAccess, or NULL */
  char *ocsp_url_unusable; /* when there is none: the first other OCSP URL (https://), unused */
  char *ca_issuers_url;    /* first http:// caIssuers URL in authorityInfoAccess, or NULL */
  bool must_staple; /* TLS Feature extension lists status_request */
  char *subject;    /* one line, for messages */
};

/* Fills `out` from `x`. Returns NULL on success or a message naming what is unsupported. */
const char *certinfo_read(X509 *x, struct cert_info *out);
void certinfo_free(struct cert_info *info);

/* "RSA-2048", "ECDSA P-256" */
void certinfo_key_desc(const struct cert_info *info, char *out, size_t cap);

/* Parses the DER value of a TLS Feature extension (SEQUENCE OF INTEGER) and reports whether it
 * lists status_request (5). Exposed for tests. */
bool certinfo_tls_feature_has_status_request(const uint8_t *der, size_t len);

/* X509_check_issued and a verified signature: `issuer` issued `subject`. */
bool certinfo_issued_by(X509 *subject, X509 *issuer);

/* Reads notBefore and notAfter. */
bool certinfo_validity(X509 *x, time_t *not_before, time_t *not_after);

/* Reads an ASN1_TIME (UTCTime or GeneralizedTime). */
bool certinfo_time(const ASN1_TIME *t, time_t *out);

#endif
