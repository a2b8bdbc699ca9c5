/* Verifying an OCSP response (RFC 6960 3.2 and 4.2.2.2) the way a client would, before stapling.
 * Signature checks come before the CertID lookup, so a tampered response is reported as such. */
#include "stapler/ocsp_verify.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "stapler/asn1time.h"
#include "stapler/certinfo.h"
#include "stapler/ocsp_certid.h"
#include "stapler/util.h"

/* Signature algorithms. SHA-1 variants are accepted because responders still in service sign
 * with them (OpenSSL's own 2012-era test vectors from GlobalSign, Comodo and CAcert are
 * sha1WithRSAEncryption); a staple is a freshness proof checked again by the client, and
 * refusing them would only leave such certificates unstapled. */
static const uint8_t kRsaSha1[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05};
static const uint8_t kRsaSha256[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b};
static const uint8_t kRsaSha384[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c};
static const uint8_t kRsaSha512[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d};
static const uint8_t kRsaPss[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a};
static const uint8_t kMgf1[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08};
static const uint8_t kEcdsaSha1[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01};
static const uint8_t kEcdsaSha256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
static const uint8_t kEcdsaSha384[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03};
static const uint8_t kEcdsaSha512[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04};

enum sig_kind { SIG_RSA_PKCS1, SIG_RSA_PSS, SIG_ECDSA };

struct sig_alg {
  enum sig_kind kind;
  const EVP_MD *md;
};

static const struct {
  const uint8_t *oid;
  size_t len;
  enum sig_kind kind;
  const EVP_MD *(*md)(void);
} kSigAlgs[] = {
    {kRsaSha256, sizeof kRsaSha256, SIG_RSA_PKCS1, EVP_sha256},
    {kRsaSha384, sizeof kRsaSha384, SIG_RSA_PKCS1, EVP_sha384},
    {kRsaSha512, sizeof kRsaSha512, SIG_RSA_PKCS1, EVP_sha512},
    {kRsaSha1, sizeof kRsaSha1, SIG_RSA_PKCS1, EVP_sha1},
    {kEcdsaSha256, sizeof kEcdsaSha256, SIG_ECDSA, EVP_sha256},
    {kEcdsaSha384, sizeof kEcdsaSha384, SIG_ECDSA, EVP_sha384},
    {kEcdsaSha512, sizeof kEcdsaSha512, SIG_ECDSA, EVP_sha512},
    {kEcdsaSha1, sizeof kEcdsaSha1, SIG_ECDSA, EVP_sha1},
};

static bool oid_is(const CBS *oid, const uint8_t *want, size_t len) {
  return CBS_len(oid) == len && !memcmp(CBS_data(oid), want, len);
}

/* A hash AlgorithmIdentifier inside PSS parameters: SEQUENCE { OID, NULL? }. */
static const EVP_MD *parse_hash_alg(CBS *in) {
  CBS alg, oid;
  if (!CBS_get_asn1(in, &alg, CBS_ASN1_SEQUENCE) || !CBS_get_asn1(&alg, &oid, CBS_ASN1_OBJECT))
    return NULL;
  if (CBS_len(&alg) > 0) {
    CBS null;
    if (!CBS_get_asn1(&alg, &null, CBS_ASN1_NULL) || CBS_len(&null) || CBS_len(&alg)) return NULL;
  }
  const EVP_MD *md = ocsp_hash_from_oid(&oid);
  return md == EVP_sha1() ? NULL : md; /* PSS here means SHA-2 only */
}

/* RSASSA-PSS-params with explicit SHA-2 hash, MGF1 over the same hash, salt = hash length. */
static bool parse_pss_params(CBS *params, struct sig_alg *out) {
  CBS seq, h, m, s, mgf_alg, mgf_oid;
  if (!CBS_get_asn1(params, &seq, CBS_ASN1_SEQUENCE) || CBS_len(params) != 0) return false;
  if (!CBS_get_asn1(&seq, &h, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0)) return false;
  const EVP_MD *md = parse_hash_alg(&h);
  if (!md || CBS_len(&h) != 0) return false;
  if (!CBS_get_asn1(&seq, &m, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 1) ||
      !CBS_get_asn1(&m, &mgf_alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&mgf_alg, &mgf_oid, CBS_ASN1_OBJECT) || !oid_is(&mgf_oid, kMgf1, sizeof kMgf1))
    return false;
  if (parse_hash_alg(&mgf_alg) != md || CBS_len(&mgf_alg) != 0 || CBS_len(&m) != 0) return false;
  uint64_t salt;
  if (!CBS_get_asn1(&seq, &s, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 2) ||
      !CBS_get_asn1_uint64(&s, &salt) || CBS_len(&s) != 0 || salt != EVP_MD_size(md))
    return false;
  if (CBS_len(&seq) > 0) { /* trailerField, only the default value 1 exists */
    CBS t;
    uint64_t trailer;
    if (!CBS_get_asn1(&seq, &t, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 3) ||
        !CBS_get_asn1_uint64(&t, &trailer) || trailer != 1 || CBS_len(&seq) != 0)
      return false;
  }
  out->kind = SIG_RSA_PSS;
  out->md = md;
  return true;
}

static bool parse_sig_alg(CBS element, struct sig_alg *out) {
  CBS alg, oid;
  if (!CBS_get_asn1(&element, &alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&alg, &oid, CBS_ASN1_OBJECT))
    return false;
  if (oid_is(&oid, kRsaPss, sizeof kRsaPss)) return parse_pss_params(&alg, out);
  for (size_t i = 0; i < ARRAY_SIZE(kSigAlgs); i++) {
    if (!oid_is(&oid, kSigAlgs[i].oid, kSigAlgs[i].len)) continue;
    if (CBS_len(&alg) > 0) { /* RSA: NULL parameters allowed; ECDSA: none */
      CBS null;
      if (kSigAlgs[i].kind != SIG_RSA_PKCS1 || !CBS_get_asn1(&alg, &null, CBS_ASN1_NULL) ||
          CBS_len(&null) || CBS_len(&alg))
        return false;
    }
    out->kind = kSigAlgs[i].kind;
    out->md = kSigAlgs[i].md();
    return true;
  }
  return false;
}

__attribute__((format(printf, 3, 4))) static enum ocsp_error fail(struct ocsp_result *out,
                                                               enum ocsp_error err,
                                                               const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out->detail, sizeof out->detail, fmt, ap);
  va_end(ap);
  return err;
}

static enum ocsp_error check_signature_with_key(const struct ocsp_parsed *p, EVP_PKEY *key,
                                                struct ocsp_result *out) {
  struct sig_alg alg;
  if (!parse_sig_alg(p->sig_alg, &alg))
    return fail(out, OCSP_ERR_ALGORITHM, "unsupported signature algorithm");
  int key_type = EVP_PKEY_id(key);
  if ((alg.kind == SIG_ECDSA) != (key_type == EVP_PKEY_EC) ||
      (alg.kind != SIG_ECDSA && key_type != EVP_PKEY_RSA))
    return fail(out, OCSP_ERR_ALGORITHM, "signature algorithm does not match the signer's key");
  EVP_MD_CTX ctx;
  EVP_MD_CTX_init(&ctx);
  EVP_PKEY_CTX *pctx = NULL;
  bool ok = EVP_DigestVerifyInit(&ctx, &pctx, alg.md, NULL, key) == 1;
  if (ok && alg.kind == SIG_RSA_PSS)
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, alg.md) == 1;
  ok = ok && EVP_DigestVerify(&ctx, CBS_data(&p->signature), CBS_len(&p->signature),
                              CBS_data(&p->tbs), CBS_len(&p->tbs)) == 1;
  EVP_MD_CTX_cleanup(&ctx);
  ERR_clear_error();
  return ok ? OCSP_OK : fail(out, OCSP_ERR_SIGNATURE, "signature does not verify");
}

static enum ocsp_error check_signature(const struct ocsp_parsed *p, X509 *signer,
                                       struct ocsp_result *out) {
  EVP_PKEY *key = X509_get_pubkey(signer);
  if (!key) return fail(out, OCSP_ERR_ALGORITHM, "cannot read the signer's public key");
  enum ocsp_error err = check_signature_with_key(p, key, out);
  EVP_PKEY_free(key);
  return err;
}

/* The ResponderID: a key hash, or a Name, compared with a certificate's as RFC 5280 7.1 says
 * (X509_NAME_cmp compares canonical forms: case-folded, runs of spaces collapsed, whatever
 * string type spells them), not as DER bytes. */
struct responder_id {
  enum ocsp_responder_kind kind;
  const uint8_t *key_hash; /* byKey: 20 bytes */
  X509_NAME *name;         /* byName: owned */
};

static bool read_responder_id(const struct ocsp_parsed *p, struct responder_id *id) {
  id->kind = p->responder_kind;
  id->key_hash = CBS_data(&p->responder);
  id->name = NULL;
  if (id->kind != OCSP_RESPONDER_BY_NAME) return true;
  const uint8_t *der = CBS_data(&p->responder);
  id->name = d2i_X509_NAME(NULL, &der, (long)CBS_len(&p->responder));
  ERR_clear_error();
  return id->name && der == CBS_data(&p->responder) + CBS_len(&p->responder);
}

static bool responder_id_matches(const struct responder_id *id, X509 *cert) {
  if (id->kind == OCSP_RESPONDER_BY_KEY) {
    uint8_t hash[20];
    return ocsp_key_sha1(cert, hash) && !memcmp(hash, id->key_hash, 20);
  }
  return X509_NAME_cmp(id->name, X509_get_subject_name(cert)) == 0;
}

/* A delegated responder (RFC 6960 4.2.2.2): issued by the issuer itself, with id-kp-OCSPSigning,
 * no critical extension a client might not know (RFC 5280 4.2), and within its validity period,
 * which then also bounds the answer's (out->signer_not_after). */
static enum ocsp_error check_delegate(X509 *delegate, X509 *issuer, time_t now,
                                      struct ocsp_result *out) {
  if (X509_check_issued(issuer, delegate) != X509_V_OK)
    return fail(out, OCSP_ERR_UNAUTHORIZED, "responder certificate is not issued by the issuer");
  if (!certinfo_issued_by(delegate, issuer))
    return fail(out, OCSP_ERR_UNAUTHORIZED, "responder certificate's signature does not verify");
  uint32_t flags = X509_get_extension_flags(delegate);
  if (flags & EXFLAG_CRITICAL)
    return fail(out, OCSP_ERR_UNAUTHORIZED,
                "responder certificate has an unsupported critical extension");
  if (!(flags & EXFLAG_XKUSAGE) || !(X509_get_extended_key_usage(delegate) & XKU_OCSP_SIGN))
    return fail(out, OCSP_ERR_UNAUTHORIZED, "responder certificate lacks the OCSPSigning EKU");
  time_t not_before, not_after;
  if (!certinfo_validity(delegate, &not_before, &not_after))
    return fail(out, OCSP_ERR_UNAUTHORIZED, "responder certificate has unreadable dates");
  char when[32];
  if (now < not_before) {
    format_utc(not_before, when, sizeof when);
    return fail(out, OCSP_ERR_NOT_YET_VALID, "the delegated responder's certificate is not valid "
                "before %s", when);
  }
  /* Its end is the answer's end too: the same rule as nextUpdate's, no use after it. */
  if (now >= not_after) {
    format_utc(not_after, when, sizeof when);
    return fail(out, OCSP_ERR_EXPIRED, "the delegated responder's certificate expired at %s",
                when);
  }
  out->signer_not_after = not_after;
  return OCSP_OK;
}

/* An included certificate named by the ResponderID: a delegated responder to check. */
static enum ocsp_error check_included(const struct ocsp_parsed *p, const struct responder_id *id,
                                      const CBS *cert_der, X509 *issuer, time_t now,
                                      struct ocsp_result *out) {
  const uint8_t *der = CBS_data(cert_der);
  X509 *cand = d2i_X509(NULL, &der, (long)CBS_len(cert_der));
  if (!cand) {
    ERR_clear_error();
    return OCSP_ERR_SIGNER_NOT_FOUND;
  }
  enum ocsp_error err = OCSP_ERR_SIGNER_NOT_FOUND;
  if (responder_id_matches(id, cand)) {
    X509_NAME_oneline(X509_get_subject_name(cand), out->responder, sizeof out->responder);
    out->delegated = 1;
    err = check_delegate(cand, issuer, now, out);
    if (err == OCSP_OK) err = check_signature(p, cand, out);
  }
  X509_free(cand);
  return err;
}

/* Finds who signed the response and checks they were allowed to, then the signature itself. */
static enum ocsp_error check_signer(const struct ocsp_parsed *p, X509 *issuer, time_t now,
                                    struct ocsp_result *out) {
  struct responder_id id;
  if (!read_responder_id(p, &id)) {
    X509_NAME_free(id.name);
    return fail(out, OCSP_ERR_MALFORMED, "malformed responderID (byName)");
  }
  enum ocsp_error err = OCSP_ERR_SIGNER_NOT_FOUND;
  if (responder_id_matches(&id, issuer)) {
    X509_NAME_oneline(X509_get_subject_name(issuer), out->responder, sizeof out->responder);
    err = check_signature(p, issuer, out);
  }
  for (size_t i = 0; i < p->cert_count && err == OCSP_ERR_SIGNER_NOT_FOUND; i++)
    err = check_included(p, &id, &p->certs[i], issuer, now, out);
  X509_NAME_free(id.name);
  if (err == OCSP_ERR_SIGNER_NOT_FOUND)
    return fail(out, OCSP_ERR_SIGNER_NOT_FOUND,
                "responder is neither the issuer nor a certificate included in the response");
  return err;
}

static enum ocsp_error check_times(const struct ocsp_single *s, time_t now,
                                   struct ocsp_result *out) {
  if (s->this_update > now + OCSP_CLOCK_SKEW_SECONDS)
    return fail(out, OCSP_ERR_NOT_YET_VALID, "thisUpdate is in the future");
  /* Without nextUpdate nobody can say when the answer stops being true; the CA/Browser Forum
   * requirements make nextUpdate mandatory, so such a response is not stapled. */
  if (!s->has_next_update) return fail(out, OCSP_ERR_NO_NEXT_UPDATE, "response has no nextUpdate");
  if (s->next_update < s->this_update)
    return fail(out, OCSP_ERR_MALFORMED, "nextUpdate is before thisUpdate");
  if (s->next_update <= now) return fail(out, OCSP_ERR_EXPIRED, "nextUpdate has passed");
  return OCSP_OK;
}

enum ocsp_error ocsp_verify(const uint8_t *der, size_t len, X509 *leaf, X509 *issuer, time_t now,
                            struct ocsp_result *out) {
  memset(out, 0, sizeof *out);
  out->revocation_reason = -1;
  struct ocsp_parsed p;
  const char *perr = ocsp_parse_response(der, len, &p);
  if (perr) return fail(out, OCSP_ERR_MALFORMED, "%s", perr);
  if (p.response_status != 0)
    return fail(out, OCSP_ERR_RESPONSE_STATUS, "responder answered %s",
                ocsp_response_status_name(p.response_status));
  if (!p.has_bytes) return fail(out, OCSP_ERR_MALFORMED, "successful response without a body");
  if (!p.is_basic) return fail(out, OCSP_ERR_NOT_BASIC, "response type is not basic");
  out->produced_at = p.produced_at;

  enum ocsp_error err = check_signer(&p, issuer, now, out);
  if (err != OCSP_OK) return err;

  const struct ocsp_single *match = NULL;
  for (size_t i = 0; i < p.single_count && !match; i++)
    if (ocsp_single_matches(&p.singles[i], leaf, issuer)) match = &p.singles[i];
  if (!match)
    return fail(out, OCSP_ERR_WRONG_CERT, "no answer for this certificate (CertID mismatch)");
  if (match->critical_extension)
    return fail(out, OCSP_ERR_MALFORMED,
                "unsupported critical extension in the answer for this certificate");

  out->status = match->status;
  out->this_update = match->this_update;
  out->next_update = match->has_next_update ? match->next_update : 0;
  out->revocation_time = match->revocation_time;
  out->revocation_reason = match->revocation_reason;
  out->valid_until = out->next_update;
  if (out->signer_not_after && out->signer_not_after < out->valid_until)
    out->valid_until = out->signer_not_after;
  return check_times(match, now, out);
}

const char *ocsp_error_name(enum ocsp_error err) {
  static const char *const names[] = {
      "ok",           "malformed",    "response-status", "not-basic",
      "signer-not-found", "unauthorized-signer", "unsupported-algorithm", "bad-signature",
      "wrong-certificate", "not-yet-valid", "no-next-update", "expired", "certificate-unknown",
  };
  return (size_t)err < ARRAY_SIZE(names) ? names[err] : "unknown";
}
