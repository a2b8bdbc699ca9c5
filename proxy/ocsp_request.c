#include "stapler/ocsp_request.h"

#include <openssl/base64.h>
#include <openssl/bytestring.h>
#include <openssl/digest.h>
#include <openssl/mem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/ocsp_certid.h"
#include "stapler/util.h"

static bool add_cert_id(CBB *parent, const struct ocsp_certid *id, const uint8_t *hash_oid,
                        size_t oid_len) {
  CBB cert_id, alg, oid, null, name_hash, key_hash;
  return CBB_add_asn1(parent, &cert_id, CBS_ASN1_SEQUENCE) &&
         CBB_add_asn1(&cert_id, &alg, CBS_ASN1_SEQUENCE) &&
         CBB_add_asn1(&alg, &oid, CBS_ASN1_OBJECT) && CBB_add_bytes(&oid, hash_oid, oid_len) &&
         CBB_add_asn1(&alg, &null, CBS_ASN1_NULL) && CBB_flush(&cert_id) &&
         CBB_add_asn1(&cert_id, &name_hash, CBS_ASN1_OCTETSTRING) &&
         CBB_add_bytes(&name_hash, id->name_hash, id->hash_len) &&
         CBB_add_asn1(&cert_id, &key_hash, CBS_ASN1_OCTETSTRING) &&
         CBB_add_bytes(&key_hash, id->key_hash, id->hash_len) &&
         CBB_add_bytes(&cert_id, id->serial, id->serial_len) && CBB_flush(parent);
}

bool ocsp_request_build(X509 *leaf, X509 *issuer, uint8_t **out, size_t *out_len) {
  struct ocsp_certid id;
  const uint8_t *oid;
  size_t oid_len;
  if (!ocsp_hash_oid(EVP_sha1(), &oid, &oid_len) ||
      !ocsp_certid_compute(leaf, issuer, EVP_sha1(), &id))
    return false;
  CBB cbb, request, tbs, list, single;
  uint8_t *der = NULL;
  size_t len = 0;
  bool ok = CBB_init(&cbb, 128) && CBB_add_asn1(&cbb, &request, CBS_ASN1_SEQUENCE) &&
            CBB_add_asn1(&request, &tbs, CBS_ASN1_SEQUENCE) &&
            CBB_add_asn1(&tbs, &list, CBS_ASN1_SEQUENCE) &&
            CBB_add_asn1(&list, &single, CBS_ASN1_SEQUENCE) &&
            add_cert_id(&single, &id, oid, oid_len) && CBB_finish(&cbb, &der, &len);
  if (!ok) CBB_cleanup(&cbb);
  ocsp_certid_free(&id);
  if (!ok) return false;
  *out = xmalloc(len);
  memcpy(*out, der, len);
  *out_len = len;
  OPENSSL_free(der);
  return true;
}

char *ocsp_request_get_url(const char *url, const uint8_t *der, size_t der_len) {
  size_t b64_cap;
  if (!EVP_EncodedLength(&b64_cap, der_len)) return NULL;
  char *b64 = xmalloc(b64_cap);
  size_t b64_len = EVP_EncodeBlock((uint8_t *)b64, der, der_len);
  /* '+', '/' and '=' are escaped: a path segment must not carry them raw (RFC 6960 A.1). */
  char *escaped = xmalloc(b64_len * 3 + 1);
  size_t n = 0;
  for (size_t i = 0; i < b64_len; i++) {
    char c = b64[i];
    if (c == '+' || c == '/' || c == '=') {
      n += (size_t)snprintf(escaped + n, 4, "%%%02X", (unsigned char)c);
    } else {
      escaped[n++] = c;
    }
  }
  escaped[n] = '\0';
  free(b64);
  size_t ulen = strlen(url);
  bool slash = ulen > 0 && url[ulen - 1] == '/';
  if (ulen + !slash + n > OCSP_GET_MAX) {
    free(escaped);
    return NULL;
  }
  char *full = xmalloc(ulen + n + 2);
  snprintf(full, ulen + n + 2, "%s%s%s", url, slash ? "" : "/", escaped);
  free(escaped);
  return full;
}
