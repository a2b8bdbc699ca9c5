#include "stapler/issuer.h"

#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <stdio.h>

#include "stapler/certinfo.h"

/* A Certificate is SEQUENCE { SEQUENCE tbsCertificate, ... }; a PKCS#7 ContentInfo is
 * SEQUENCE { OBJECT IDENTIFIER contentType, ... }. Only the first header is looked at, so that a
 * damaged bundle is reported as one; the parsers then check everything. */
#define DER_SEQUENCE 0x30 /* as encoded: CBS_ASN1_* constants are not byte values */
#define DER_OBJECT 0x06

static bool looks_like_pkcs7(const uint8_t *body, size_t len) {
  CBS in;
  CBS_init(&in, body, len);
  uint8_t tag, length, inner;
  if (!CBS_get_u8(&in, &tag) || tag != DER_SEQUENCE || !CBS_get_u8(&in, &length))
    return false;
  if ((length & 0x80) && !CBS_skip(&in, length & 0x7f)) return false;
  return CBS_get_u8(&in, &inner) && inner == DER_OBJECT;
}

static X509 *from_der(const uint8_t *body, size_t len, X509 *leaf, char *err, size_t err_len) {
  const uint8_t *p = body;
  X509 *cert = d2i_X509(NULL, &p, (long)len);
  ERR_clear_error();
  if (!cert || p != body + len) {
    X509_free(cert);
    snprintf(err, err_len, "the answer is neither a DER certificate nor a PKCS#7 bundle");
    return NULL;
  }
  if (certinfo_issued_by(leaf, cert)) return cert;
  char subject[200];
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
  snprintf(err, err_len, "%s did not sign this certificate", subject);
  X509_free(cert);
  return NULL;
}

/* Bundles are unordered (RFC 2315): the signer is searched for. */
static X509 *from_pkcs7(const uint8_t *body, size_t len, X509 *leaf, char *err, size_t err_len) {
  STACK_OF(X509) *certs = sk_X509_new_null();
  CBS in;
  CBS_init(&in, body, len);
  X509 *found = NULL;
  if (!certs || !PKCS7_get_certificates(certs, &in) || CBS_len(&in) != 0) {
    snprintf(err, err_len, "the PKCS#7 bundle is malformed");
  } else {
    for (size_t i = 0; i < sk_X509_num(certs) && !found; i++)
      if (certinfo_issued_by(leaf, sk_X509_value(certs, i))) found = sk_X509_value(certs, i);
    if (found)
      X509_up_ref(found);
    else
      snprintf(err, err_len, "none of the %zu certificate(s) in the PKCS#7 bundle signed this "
               "certificate", sk_X509_num(certs));
  }
  sk_X509_pop_free(certs, X509_free);
  ERR_clear_error();
  return found;
}

X509 *issuer_from_answer(const uint8_t *body, size_t len, X509 *leaf, enum issuer_format *format,
                         char *err, size_t err_len) {
  *format = looks_like_pkcs7(body, len) ? ISSUER_FORMAT_PKCS7 : ISSUER_FORMAT_DER;
  return *format == ISSUER_FORMAT_PKCS7 ? from_pkcs7(body, len, leaf, err, err_len)
                                        : from_der(body, len, leaf, err, err_len);
}

const char *issuer_format_name(enum issuer_format format) {
  return format == ISSUER_FORMAT_PKCS7 ? "PKCS#7" : "DER";
}
