/* CertID (RFC 6960 4.1.1): which certificate an OCSP request or answer is about. */
#ifndef STAPLER_OCSP_CERTID_H
#define STAPLER_OCSP_CERTID_H

#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/x509.h>
#include <stdbool.h>

#include "stapler/ocsp_parse.h"

struct ocsp_certid {
  const EVP_MD *md;
  uint8_t name_hash[EVP_MAX_MD_SIZE]; /* hash of the issuer's subject Name DER */
  uint8_t key_hash[EVP_MAX_MD_SIZE];  /* hash of the issuer's subjectPublicKey BIT STRING value */
  size_t hash_len;
  uint8_t *serial; /* the leaf's serialNumber as a whole DER INTEGER; heap */
  size_t serial_len;
};

/* The digest for a CertID hashAlgorithm OID (SHA-1, SHA-256, SHA-384, SHA-512), or NULL. */
const EVP_MD *ocsp_hash_from_oid(const CBS *oid);
/* The OID contents for one of those digests, for building requests. */
bool ocsp_hash_oid(const EVP_MD *md, const uint8_t **oid, size_t *oid_len);

bool ocsp_certid_compute(X509 *leaf, X509 *issuer, const EVP_MD *md, struct ocsp_certid *out);
void ocsp_certid_free(struct ocsp_certid *id);

/* True when `single` names `leaf` as issued by `issuer`, in whatever hash it uses. */
bool ocsp_single_matches(const struct ocsp_single *single, X509 *leaf, X509 *issuer);

/* SHA-1 of the issuer key, as a byKey ResponderID carries it. */
bool ocsp_key_sha1(X509 *cert, uint8_t out[20]);

#endif
