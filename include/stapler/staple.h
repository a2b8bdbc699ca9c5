/* A verified OCSP response ready to send. Immutable after creation. Its references belong to
 * the control thread (the certificates of each generation that hold it); a handshake reads the
 * current one inside a QSBR read section (see qsbr.h) and takes none, and a replaced one is
 * released only once no worker can still be reading it. */
#ifndef STAPLER_STAPLE_H
#define STAPLER_STAPLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "stapler/ocsp_verify.h"

struct staple {
  atomic_uint refs;
  uint8_t *der;
  size_t len;
  enum ocsp_cert_status status;
  time_t produced_at, this_update, next_update;
  time_t valid_until; /* nextUpdate, or the delegated signer's notAfter when earlier */
};

/* Copies `der`; takes times and status from `verified`. The new staple has one reference. */
struct staple *staple_new(const uint8_t *der, size_t len, const struct ocsp_result *verified);
/* An equal staple of its own (one reference). */
struct staple *staple_copy(const struct staple *from);
struct staple *staple_ref(struct staple *s);
void staple_unref(struct staple *s);

/* True while the staple may be sent: before its nextUpdate and while its delegated signer (if
 * any) is valid, since a client checks both. */
bool staple_fresh(const struct staple *s, time_t now);

#endif
