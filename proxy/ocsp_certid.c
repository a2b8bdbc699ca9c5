#include "stapler/ocsp_certid.h"

#include <openssl/mem.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/util.h"

static const uint8_t kSha1Oid[] = {0x2b, 0x0e, 0x03, 0x02, 0x1a};
static const uint8_t kSha256Oid[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01};
static const uint8_t kSha384Oid[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02};
static const uint8_t kSha512Oid[] = {0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03};

static const struct {
  const uint8_t *oid;
  size_t len;
  const EVP_MD *(*md)(void);
} kHashes[] = {
    {kSha1Oid, sizeof kSha1Oid, EVP_sha1},
    {kSha256Oid, sizeof kSha256Oid, EVP_sha256},
    {kSha384Oid, sizeof kSha384Oid, EVP_sha384},
    {kSha512Oid, sizeof kSha512Oid, EVP_sha512},
};

const EVP_MD *ocsp_hash_from_oid(const CBS *oid) {
  for (size_t i = 0; i < ARRAY_SIZE(kHashes); i++)
    if (CBS_len(oid) == kHashes[i].len && !memcmp(CBS_data(oid), kHashes[i].oid, kHashes[i].len))
      return kHashes[i].md();
  return NULL;
}

bool ocsp_hash_oid(const EVP_MD *md, const uint8_t **oid, size_t *oid_len) {
  for (size_t i = 0; i < ARRAY_SIZE(kHashes); i++)
    if (kHashes[i].md() == md) {
      *oid = kHashes[i].oid;
      *oid_len = kHashes[i].len;
      return true;
    }
  return false;
}

bool ocsp_certid_compute(X509 *leaf, X509 *issuer, const EVP_MD *md, struct ocsp_certid *out) {
  memset(out, 0, sizeof *out);
  out->md = md;
  uint8_t *name_der = NULL;
  int name_len = i2d_X509_NAME(X509_get_subject_name(issuer), &name_der);
  ASN1_BIT_STRING *key = X509_get0_pubkey_bitstr(issuer);
  unsigned n1 = 0, n2 = 0;
  bool ok = name_len > 0 && key &&
            EVP_Digest(name_der, (size_t)name_len, out->name_hash, &n1, md, NULL) &&
            EVP_Digest(ASN1_STRING_get0_data(key), (size_t)ASN1_STRING_length(key),
                       out->key_hash, &n2, md, NULL);
  OPENSSL_free(name_der);
  if (!ok) return false;
  out->hash_len = n1;
  uint8_t *serial = NULL;
  int serial_len = i2d_ASN1_INTEGER(X509_get_serialNumber(leaf), &serial);
  if (serial_len <= 0) return false;
  out->serial = xmalloc((size_t)serial_len);
  memcpy(out->serial, serial, (size_t)serial_len);
  out->serial_len = (size_t)serial_len;
  OPENSSL_free(serial);
  return true;
}

void ocsp_certid_free(struct ocsp_certid *id) {
  free(id->serial);
  id->serial = NULL;
}

bool ocsp_single_matches(const struct ocsp_single *single, X509 *leaf, X509 *issuer) {
  const EVP_MD *md = ocsp_hash_from_oid(&single->hash_oid);
  if (!md) return false;
  struct ocsp_certid id;
  if (!ocsp_certid_compute(leaf, issuer, md, &id)) return false;
  bool match = CBS_len(&single->name_hash) == id.hash_len &&
               !memcmp(CBS_data(&single->name_hash), id.name_hash, id.hash_len) &&
               CBS_len(&single->key_hash) == id.hash_len &&
               !memcmp(CBS_data(&single->key_hash), id.key_hash, id.hash_len) &&
               CBS_len(&single->serial) == id.serial_len &&
               !memcmp(CBS_data(&single->serial), id.serial, id.serial_len);
  ocsp_certid_free(&id);
  return match;
}

bool ocsp_key_sha1(X509 *cert, uint8_t out[20]) {
  ASN1_BIT_STRING *key = X509_get0_pubkey_bitstr(cert);
  if (!key) return false;
  SHA1(ASN1_STRING_get0_data(key), (size_t)ASN1_STRING_length(key), out);
  return true;
}
