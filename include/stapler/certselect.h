/* Choosing the certificate for a handshake: among the name's candidates (exact name first, then
 * wildcard), a certificate within its validity before one that is not, then the ECDSA one when
 * the client can verify it before the RSA one, subject to the OCSP policy when the client asked
 * for a staple. Pure functions of their inputs, so every rule is unit-tested without a
 * handshake. */
#ifndef STAPLER_CERTSELECT_H
#define STAPLER_CERTSELECT_H

#include <stdint.h>
#include <time.h>

#include "stapler/certstore.h"
#include "stapler/clienthello.h"

/* The version the handshake will use: the highest both sides allow, or 0 when none. */
uint16_t certselect_version(const struct client_caps *caps, uint16_t min_version,
                            uint16_t max_version);

/* Whether a client with `caps`, speaking `version`, can complete a handshake with a
 * certificate described by `info`. */
bool certselect_client_can_use(const struct client_caps *caps, uint16_t version,
                               const struct cert_info *info);

/* Whether the OCSP policy lets `c`, whose current staple is `staple`, be served to this
 * client. */
bool certselect_policy_allows(const struct cert *c, const struct staple *staple,
                              const struct client_caps *caps, time_t now);

enum certselect_failure {
  CERTSELECT_OK,
  CERTSELECT_NO_VERSION,      /* no TLS version in common */
  CERTSELECT_NO_USABLE_CERT,  /* the client can verify none of the name's certificates */
  CERTSELECT_NO_VALID_STAPLE, /* usable, but the OCSP policy forbids serving without a staple */
  CERTSELECT_BAD_HELLO,       /* a ClientHello clienthello_parse() refuses */
  CERTSELECT_BAD_SNI,         /* a server_name that is not a host name */
};

struct cert_choice {
  const struct cert *cert;
  struct staple *staple; /* to send: fresh, and only when the client asked; else NULL */
};

/* Chooses the certificate (and the staple read with the same load). An expired or not yet
 * valid certificate is chosen only when no valid one can be served. False with `*why` saying
 * why when none can be served. */
bool certselect_choose(const struct client_caps *caps, uint16_t version,
                       const struct cert_candidates *candidates, time_t now,
                       struct cert_choice *out, enum certselect_failure *why);

const char *certselect_failure_text(enum certselect_failure why);

#endif
