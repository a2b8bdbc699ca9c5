/* The rules, from the TLS specifications and what this BoringSSL enforces:
 * - TLS 1.3 (RFC 8446 4.2.3): the client's signature_algorithms must hold a scheme our key can
 *   sign with. ECDSA schemes name their curve; RSA needs rsa_pss_rsae_*.
 * - TLS 1.2 (RFC 5246 7.4.1.4.1, RFC 8422 5.1): the key type is fixed by the cipher suite, so an
 *   ECDHE suite for that key type must be offered; ECDHE needs a group both sides support
 *   (BoringSSL does no ECDHE without supported_groups); an ECDSA certificate's curve must be in
 *   supported_groups; a client without signature_algorithms implies SHA-1 for either key. */
#include "stapler/certselect.h"

#include <openssl/nid.h>
#include <openssl/ssl.h>

#define OUR_KX_GROUPS (CAPS_GROUP_X25519 | CAPS_GROUP_P256 | CAPS_GROUP_P384)
#define TLS12_ECDSA_SIGALGS                                                            \
  (CAPS_SIG_ECDSA_P256_SHA256 | CAPS_SIG_ECDSA_P384_SHA384 | CAPS_SIG_ECDSA_P521_SHA512 | \
   CAPS_SIG_ECDSA_SHA1)
#define TLS12_RSA_SIGALGS (CAPS_SIG_RSA_PKCS1 | CAPS_SIG_RSA_PSS_RSAE)

uint16_t certselect_version(const struct client_caps *caps, uint16_t min_version,
                            uint16_t max_version) {
  if (caps->offers_tls13 && max_version >= TLS1_3_VERSION) return TLS1_3_VERSION;
  if (caps->offers_tls12 && min_version <= TLS1_2_VERSION) return TLS1_2_VERSION;
  return 0;
}

static unsigned curve_group(int curve_nid) {
  return curve_nid == NID_secp384r1 ? CAPS_GROUP_P384 : CAPS_GROUP_P256;
}

static unsigned curve_sigalg(int curve_nid) {
  return curve_nid == NID_secp384r1 ? CAPS_SIG_ECDSA_P384_SHA384 : CAPS_SIG_ECDSA_P256_SHA256;
}

static bool tls13_can_use(const struct client_caps *caps, const struct cert_info *info) {
  if (info->kind == KEY_KIND_ECDSA) return (caps->sigalgs & curve_sigalg(info->curve_nid)) != 0;
  return (caps->sigalgs & CAPS_SIG_RSA_PSS_RSAE) != 0;
}

static bool tls12_can_use(const struct client_caps *caps, const struct cert_info *info) {
  if (!(caps->groups & OUR_KX_GROUPS)) return false; /* no ECDHE, and we offer nothing else */
  if (info->kind == KEY_KIND_ECDSA) {
    return (caps->suites & CAPS_SUITE_ECDHE_ECDSA) &&
           (caps->groups & curve_group(info->curve_nid)) &&
           (!caps->has_sigalgs || (caps->sigalgs & TLS12_ECDSA_SIGALGS));
  }
  return (caps->suites & CAPS_SUITE_ECDHE_RSA) &&
         (!caps->has_sigalgs || (caps->sigalgs & TLS12_RSA_SIGALGS));
}

bool certselect_client_can_use(const struct client_caps *caps, uint16_t version,
                               const struct cert_info *info) {
  if (version == TLS1_3_VERSION) return tls13_can_use(caps, info);
  if (version == TLS1_2_VERSION) return tls12_can_use(caps, info);
  return false;
}

bool certselect_policy_allows(const struct cert *c, const struct staple *staple,
                              const struct client_caps *caps, time_t now) {
  if (!caps->status_request) return true;
  switch (c->policy) {
  case OCSP_POLICY_MUST_STAPLE: return staple_fresh(staple, now);
  case OCSP_POLICY_STRICT: return !staple || staple_fresh(staple, now);
  default: return true;
  }
}

/* The candidates in order of preference, before validity is considered: each pair's ECDSA
 * certificate (cheaper) before its RSA one. Returns how many. */
static size_t order(const struct cert_candidates *candidates, const struct cert *out[4]) {
  size_t n = 0;
  for (size_t i = 0; i < candidates->count && i < 2; i++) {
    const struct cert_pair *p = candidates->pairs[i];
    if (p->ecdsa) out[n++] = p->ecdsa;
    if (p->rsa) out[n++] = p->rsa;
  }
  return n;
}

bool certselect_choose(const struct client_caps *caps, uint16_t version,
                       const struct cert_candidates *candidates, time_t now,
                       struct cert_choice *out, enum certselect_failure *why) {
  if (!version) {
    *why = CERTSELECT_NO_VERSION;
    return false;
  }
  const struct cert *certs[4];
  size_t n = order(candidates, certs);
  bool usable = false;
  /* First pass: certificates within their validity; second: the others, which are still
   * better than no handshake at all. */
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < n; i++) {
      const struct cert *c = certs[i];
      if (cert_within_validity(c, now) != (pass == 0)) continue;
      if (!certselect_client_can_use(caps, version, &c->info)) continue;
      usable = true;
      struct staple *s = cert_staple(c);
      if (certselect_policy_allows(c, s, caps, now)) {
        *why = CERTSELECT_OK;
        out->cert = c;
        out->staple = caps->status_request && staple_fresh(s, now) ? s : NULL;
        return true;
      }
    }
  }
  *why = usable ? CERTSELECT_NO_VALID_STAPLE : CERTSELECT_NO_USABLE_CERT;
  return false;
}

const char *certselect_failure_text(enum certselect_failure why) {
  switch (why) {
  case CERTSELECT_NO_VERSION: return "no TLS version in common";
  case CERTSELECT_NO_USABLE_CERT: return "client cannot verify any certificate for this name";
  case CERTSELECT_NO_VALID_STAPLE: return "OCSP policy requires a valid staple and none exists";
  case CERTSELECT_BAD_HELLO: return "malformed ClientHello";
  case CERTSELECT_BAD_SNI: return "SNI is not a host name";
  default: return "ok";
  }
}
