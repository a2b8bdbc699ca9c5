/* When to fetch a certificate's OCSP response next. Pure: the clock and the randomness are
 * arguments, so every rule is tested without waiting. */
#ifndef STAPLER_OCSP_SCHEDULE_H
#define STAPLER_OCSP_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define OCSP_BACKOFF_MIN 60    /* first retry after a failure, seconds */
#define OCSP_BACKOFF_MAX 3600  /* retries never wait longer than this */

struct ocsp_schedule_in {
  bool have_staple;
  time_t this_update;              /* of the current staple */
  time_t next_update;              /* when it expires: nextUpdate, or its signer's notAfter */
  unsigned failures;               /* consecutive failed attempts since the last success */
  bool unchanged;                  /* the last answer was the current staple again */
};

/* The next attempt, never before `now`:
 * - no staple and no failure: at once;
 * - a staple: about half-way through thisUpdate..nextUpdate, plus or minus 5% of that span
 *   (so many certificates do not hit a responder together); at once, spread over 5 s, when
 *   that point has passed;
 * - the responder sent the current staple again (a cache in front of it serves it until it is
 *   stale, RFC 5019): half-way from now to its nextUpdate, plus or minus 5%, at least 10 s on;
 * - after failures: 1 min, 2 min, 4 min ... up to 1 h (plus or minus 10%), but never later than
 *   shortly before the current staple's nextUpdate, so a good answer can still arrive in time.
 * `random` is any uniformly random 32-bit number. */
time_t ocsp_schedule_next(const struct ocsp_schedule_in *in, time_t now, uint32_t random);

#endif
