/* Fresh self-signed certificates for the embedded default configuration. */
#ifndef STAPLER_SELFSIGNED_H
#define STAPLER_SELFSIGNED_H

#include <time.h>

#include "stapler/cert.h"

/* An RSA-2048 or ECDSA P-256 certificate for `name` (plus 127.0.0.1 and ::1), valid from an hour
 * ago for a year. NULL on failure with a message in `errors`. */
struct cert *selfsigned_make(enum key_kind kind, const char *name, time_t now,
                             struct strlist *errors);

#endif
