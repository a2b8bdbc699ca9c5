#include "stapler/selfsigned.h"

#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <stdio.h>

#include "stapler/util.h"

static EVP_PKEY *make_key(enum key_kind kind) {
  EVP_PKEY *pkey = EVP_PKEY_new();
  if (!pkey) return NULL;
  if (kind == KEY_KIND_RSA) {
    RSA *rsa = RSA_new();
    BIGNUM *e = BN_new();
    bool ok = rsa && e && BN_set_word(e, RSA_F4) && RSA_generate_key_ex(rsa, 2048, e, NULL) &&
              EVP_PKEY_assign_RSA(pkey, rsa);
    BN_free(e);
    if (!ok) {
      RSA_free(rsa);
      EVP_PKEY_free(pkey);
      return NULL;
    }
  } else {
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    if (!ec || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(pkey, ec)) {
      EC_KEY_free(ec);
      EVP_PKEY_free(pkey);
      return NULL;
    }
  }
  return pkey;
}

static bool add_ext(X509 *x, int nid, const char *value) {
  X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, NULL, nid, value);
  bool ok = ext && X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  return ok;
}

static bool random_serial(X509 *x) {
  uint8_t bytes[16];
  RAND_bytes(bytes, sizeof bytes);
  bytes[0] &= 0x7f; /* positive */
  BIGNUM *bn = BN_bin2bn(bytes, sizeof bytes, NULL);
  ASN1_INTEGER *serial = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
  bool ok = serial && X509_set_serialNumber(x, serial);
  ASN1_INTEGER_free(serial);
  BN_free(bn);
  return ok;
}

static X509 *make_cert(EVP_PKEY *key, enum key_kind kind, const char *name, time_t now) {
  X509 *x = X509_new();
  X509_NAME *subject = X509_NAME_new();
  char san[300];
  snprintf(san, sizeof san, "DNS:%s,IP:127.0.0.1,IP:::1", name);
  bool ok = x && subject && X509_set_version(x, X509_VERSION_3) && random_serial(x) &&
            X509_time_adj_ex(X509_getm_notBefore(x), 0, -3600, &now) &&
            X509_time_adj_ex(X509_getm_notAfter(x), 365, 0, &now) &&
            X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const uint8_t *)name, -1,
                                       -1, 0) &&
            X509_set_subject_name(x, subject) && X509_set_issuer_name(x, subject) &&
            X509_set_pubkey(x, key) && add_ext(x, NID_subject_alt_name, san) &&
            add_ext(x, NID_basic_constraints, "critical,CA:FALSE") &&
            add_ext(x, NID_key_usage,
                    kind == KEY_KIND_RSA ? "critical,digitalSignature,keyEncipherment"
                                         : "critical,digitalSignature") &&
            add_ext(x, NID_ext_key_usage, "serverAuth") && X509_sign(x, key, EVP_sha256());
  X509_NAME_free(subject);
  if (!ok) {
    X509_free(x);
    return NULL;
  }
  return x;
}

struct cert *selfsigned_make(enum key_kind kind, const char *name, time_t now,
                             struct strlist *errors) {
  EVP_PKEY *key = make_key(kind);
  X509 *x = key ? make_cert(key, kind, name, now) : NULL;
  if (!x) {
    strlist_add(errors, "cannot generate a self-signed certificate");
    ERR_clear_error();
    EVP_PKEY_free(key);
    return NULL;
  }
  X509 **chain = xmalloc(sizeof *chain);
  chain[0] = x;
  return cert_from_x509(kind == KEY_KIND_RSA ? "self-signed RSA" : "self-signed ECDSA", chain, 1,
                        key, OCSP_POLICY_LENIENT, now, errors, errors);
}
