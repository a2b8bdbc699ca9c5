#include "stapler/ocsp_schedule.h"

#include "stapler/util.h"

/* A value in [-spread, +spread] from `random`. */
static time_t jitter(uint32_t random, time_t spread) {
  if (spread <= 0) return 0;
  return (time_t)(random % (uint32_t)(2 * spread + 1)) - spread;
}

static time_t backoff(unsigned failures, uint32_t random) {
  time_t wait = OCSP_BACKOFF_MIN;
  for (unsigned i = 1; i < failures && wait < OCSP_BACKOFF_MAX; i++) wait *= 2;
  wait = MIN(wait, OCSP_BACKOFF_MAX);
  return wait + jitter(random, wait / 10);
}

time_t ocsp_schedule_next(const struct ocsp_schedule_in *in, time_t now, uint32_t random) {
  bool usable = in->have_staple && in->next_update > now;
  if (in->failures == 0) {
    if (!in->have_staple) return now;
    if (in->unchanged && usable) {
      time_t left = in->next_update - now;
      return MAX(now + left / 2 + jitter(random, left / 20), now + 10);
    }
    time_t span = in->next_update - in->this_update;
    time_t at = in->this_update + span / 2 + jitter(random, span / 20);
    return at > now ? at : now + (time_t)(random % 6);
  }
  time_t at = now + backoff(in->failures, random);
  if (usable) {
    /* Leave room for one more try before the staple expires. */
    time_t margin = MIN((time_t)300, (in->next_update - now) / 2);
    at = MIN(at, in->next_update - margin);
  }
  return MAX(at, now + 10);
}
