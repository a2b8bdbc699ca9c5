/* Full verification of an OCSP response for one certificate: status, CertID, signer
 * authorisation, signature and time window. Nothing is stapled or cached without passing this. */
#ifndef STAPLER_OCSP_VERIFY_H
#define STAPLER_OCSP_VERIFY_H

#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "stapler/ocsp_parse.h"

/* A responder's clock may run a little ahead of ours. */
#define OCSP_CLOCK_SKEW_SECONDS 300

enum ocsp_error {
  OCSP_OK = 0,
  OCSP_ERR_MALFORMED,
  OCSP_ERR_RESPONSE_STATUS,   /* responseStatus is not successful */
  OCSP_ERR_NOT_BASIC,         /* responseType is not id-pkix-ocsp-basic */
  OCSP_ERR_SIGNER_NOT_FOUND,  /* responderID matches neither the issuer nor an included cert */
  OCSP_ERR_UNAUTHORIZED,      /* included signer not issued by the issuer, without the
                                 OCSPSigning EKU, or with a critical extension we do not know */
  OCSP_ERR_ALGORITHM,         /* signature algorithm unsupported or not matching the key */
  OCSP_ERR_SIGNATURE,         /* signature does not verify */
  OCSP_ERR_WRONG_CERT,        /* no SingleResponse for this certificate and issuer */
  OCSP_ERR_NOT_YET_VALID,     /* thisUpdate, or the delegated signer's notBefore, in the future */
  OCSP_ERR_NO_NEXT_UPDATE,    /* cannot tell when it expires */
  OCSP_ERR_EXPIRED,           /* nextUpdate, or the delegated signer's notAfter, has passed */
  OCSP_ERR_CERT_UNKNOWN,      /* verified, but the responder does not know the certificate:
                                 never stapled (ocsp_verify itself returns OCSP_OK for it) */
};

struct ocsp_result {
  enum ocsp_cert_status status;
  time_t produced_at, this_update, next_update;
  time_t signer_not_after; /* a delegated signer's notAfter; 0 when the issuer signed */
  /* When the answer stops being usable: nextUpdate, or the delegated signer's notAfter when that
   * comes first (a client checking the signer would refuse the answer from then on). */
  time_t valid_until;
  time_t revocation_time;
  int revocation_reason; /* -1 when absent */
  int delegated;         /* signed by a delegated responder rather than the issuer */
  char responder[256];   /* the signer's subject */
  char detail[256];      /* on failure: what exactly was wrong */
};

/* Verifies `der` as the answer for `leaf` issued by `issuer` at time `now`. */
enum ocsp_error ocsp_verify(const uint8_t *der, size_t len, X509 *leaf, X509 *issuer, time_t now,
                            struct ocsp_result *out);

/* A short stable name for logs and metrics, like "bad-signature". */
const char *ocsp_error_name(enum ocsp_error err);

#endif
