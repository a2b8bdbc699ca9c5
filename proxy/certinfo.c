#include "stapler/certinfo.h"

#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stapler/asn1time.h"
#include "stapler/util.h"

/* id-pe-tlsfeature, 1.3.6.1.5.5.7.1.24 (RFC 7633); this BoringSSL has no NID for it. */
static const uint8_t kTlsFeatureOid[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x18};
#define TLS_FEATURE_STATUS_REQUEST 5

bool certinfo_time(const ASN1_TIME *t, time_t *out) {
  const uint8_t *s = ASN1_STRING_get0_data(t);
  size_t len = (size_t)ASN1_STRING_length(t);
  if (ASN1_STRING_type(t) == V_ASN1_UTCTIME) return asn1_parse_utc_time(s, len, out);
  if (ASN1_STRING_type(t) == V_ASN1_GENERALIZEDTIME)
    return asn1_parse_generalized_time(s, len, out);
  return false;
}

bool certinfo_issued_by(X509 *subject, X509 *issuer) {
  if (X509_check_issued(issuer, subject) != X509_V_OK) return false;
  EVP_PKEY *key = X509_get_pubkey(issuer);
  bool ok = key && X509_verify(subject, key) == 1;
  EVP_PKEY_free(key);
  ERR_clear_error();
  return ok;
}

bool certinfo_validity(X509 *x, time_t *not_before, time_t *not_after) {
  return certinfo_time(X509_get0_notBefore(x), not_before) &&
         certinfo_time(X509_get0_notAfter(x), not_after);
}

bool certinfo_tls_feature_has_status_request(const uint8_t *der, size_t len) {
  CBS in, seq;
  CBS_init(&in, der, len);
  if (!CBS_get_asn1(&in, &seq, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0) return false;
  while (CBS_len(&seq) > 0) {
    uint64_t feature;
    if (!CBS_get_asn1_uint64(&seq, &feature)) return false;
    if (feature == TLS_FEATURE_STATUS_REQUEST) return true;
  }
  return false;
}

static bool read_must_staple(X509 *x) {
  for (int i = 0; i < X509_get_ext_count(x); i++) {
    X509_EXTENSION *ext = X509_get_ext(x, i);
    const ASN1_OBJECT *obj = X509_EXTENSION_get_object(ext);
    if (OBJ_length(obj) != sizeof kTlsFeatureOid ||
        memcmp(OBJ_get0_data(obj), kTlsFeatureOid, sizeof kTlsFeatureOid) != 0)
      continue;
    const ASN1_OCTET_STRING *value = X509_EXTENSION_get_data(ext);
    return certinfo_tls_feature_has_status_request(ASN1_STRING_get0_data(value),
                                                   (size_t)ASN1_STRING_length(value));
  }
  return false;
}

static bool valid_dns_name(const uint8_t *s, size_t len) {
  if (len == 0 || len > 253) return false;
  for (size_t i = 0; i < len; i++) {
    uint8_t c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '.' || c == '*' || c == '_'))
      return false;
  }
  return true;
}

static void add_name(struct cert_info *info, const uint8_t *s, size_t len) {
  if (!valid_dns_name(s, len)) return;
  info->names = xrealloc(info->names, (info->name_count + 1) * sizeof *info->names);
  char *name = xstrndup((const char *)s, len);
  ascii_lower(name);
  info->names[info->name_count++] = name;
}

/* The subject CN, for certificates without any subjectAltName (older self-made ones). */
static const char *read_cn(X509 *x, struct cert_info *info) {
  X509_NAME *subject = X509_get_subject_name(x);
  int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (idx < 0)
    return "the certificate has no subjectAltName and no subject CN: it names no DNS host";
  const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
  add_name(info, ASN1_STRING_get0_data(cn), (size_t)ASN1_STRING_length(cn));
  return info->name_count ? NULL
                          : "the certificate has no subjectAltName, and its subject CN is not a "
                            "DNS host name";
}

/* RFC 6125 6.4.4: with a subjectAltName extension the CN is no name, even when the extension
 * holds no DNS name. Returns NULL or why the certificate names no DNS host. */
static const char *read_names(X509 *x, struct cert_info *info) {
  if (X509_get_ext_by_NID(x, NID_subject_alt_name, -1) < 0) return read_cn(x, info);
  GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  ERR_clear_error();
  if (!sans) return "the certificate's subjectAltName extension is malformed";
  size_t dns = 0, ips = 0;
  for (size_t i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
    if (gn->type == GEN_DNS) {
      dns++;
      add_name(info, ASN1_STRING_get0_data(gn->d.dNSName),
               (size_t)ASN1_STRING_length(gn->d.dNSName));
    } else if (gn->type == GEN_IPADD) {
      ips++;
    }
  }
  GENERAL_NAMES_free(sans);
  if (info->name_count > 0) return NULL;
  if (dns > 0) return "the subjectAltName's DNS entries are not host names";
  if (ips > 0)
    return "the subjectAltName names no DNS host, only IP addresses (the subject CN does not "
           "count beside a subjectAltName, RFC 6125); stapler chooses certificates by DNS name";
  return "the subjectAltName names no DNS host (the subject CN does not count beside a "
         "subjectAltName, RFC 6125)";
}

/* The OCSP and caIssuers URLs of authorityInfoAccess. Only http:// ones are fetched: RFC 6960
 * A.1 and RFC 5280 4.2.2.1 (answers and certificates are signed, plain http is the rule). */
static void read_access(X509 *x, struct cert_info *info) {
  AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(x, NID_info_access, NULL, NULL);
  ERR_clear_error();
  for (size_t i = 0; aia && i < sk_ACCESS_DESCRIPTION_num(aia); i++) {
    const ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
    if (ad->location->type != GEN_URI) continue;
    const ASN1_IA5STRING *uri = ad->location->d.uniformResourceIdentifier;
    char *url = xstrndup((const char *)ASN1_STRING_get0_data(uri),
                         (size_t)ASN1_STRING_length(uri));
    bool http = strncasecmp(url, "http://", 7) == 0 &&
                strlen(url) == (size_t)ASN1_STRING_length(uri); /* no NUL inside */
    char **slot = NULL;
    int method = OBJ_obj2nid(ad->method);
    if (method == NID_ad_OCSP)
      slot = http ? &info->ocsp_url : &info->ocsp_url_unusable;
    else if (method == NID_ad_ca_issuers && http)
      slot = &info->ca_issuers_url;
    if (slot && !*slot) {
      *slot = url;
      url = NULL;
    }
    free(url);
  }
  AUTHORITY_INFO_ACCESS_free(aia);
  if (info->ocsp_url) {
    free(info->ocsp_url_unusable);
    info->ocsp_url_unusable = NULL;
  }
}

static const char *read_key(X509 *x, struct cert_info *info) {
  EVP_PKEY *pkey = X509_get_pubkey(x);
  if (!pkey) return "cannot read the certificate's public key";
  const char *err = NULL;
  info->key_bits = EVP_PKEY_bits(pkey);
  if (EVP_PKEY_id(pkey) == EVP_PKEY_RSA) {
    info->kind = KEY_KIND_RSA;
    if (info->key_bits < 2048) err = "RSA keys shorter than 2048 bits are not supported";
  } else if (EVP_PKEY_id(pkey) == EVP_PKEY_EC) {
    info->kind = KEY_KIND_ECDSA;
    info->curve_nid = EC_GROUP_get_curve_name(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(pkey)));
    if (info->curve_nid != NID_X9_62_prime256v1 && info->curve_nid != NID_secp384r1)
      err = "ECDSA keys must be on P-256 or P-384";
  } else {
    err = "only RSA and ECDSA certificates are supported";
  }
  EVP_PKEY_free(pkey);
  return err;
}

const char *certinfo_read(X509 *x, struct cert_info *out) {
  memset(out, 0, sizeof *out);
  char subject[256];
  X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof subject);
  out->subject = xstrdup(subject);
  const char *err = read_key(x, out);
  if (err) return err;
  if (!certinfo_validity(x, &out->not_before, &out->not_after))
    return "cannot read the certificate's validity dates";
  if ((err = read_names(x, out))) return err;
  read_access(x, out);
  out->must_staple = read_must_staple(x);
  return NULL;
}

void certinfo_free(struct cert_info *info) {
  for (size_t i = 0; i < info->name_count; i++) free(info->names[i]);
  free(info->names);
  free(info->ocsp_url);
  free(info->ocsp_url_unusable);
  free(info->ca_issuers_url);
  free(info->subject);
  memset(info, 0, sizeof *info);
}

void certinfo_key_desc(const struct cert_info *info, char *out, size_t cap) {
  if (info->kind == KEY_KIND_RSA)
    snprintf(out, cap, "RSA-%d", info->key_bits);
  else
    snprintf(out, cap, "ECDSA %s", info->curve_nid == NID_secp384r1 ? "P-384" : "P-256");
}
