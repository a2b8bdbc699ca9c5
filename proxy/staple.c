#include "stapler/staple.h"

#include <stdlib.h>
#include <string.h>

#include "stapler/util.h"

struct staple *staple_new(const uint8_t *der, size_t len, const struct ocsp_result *verified) {
  struct staple *s = xcalloc(1, sizeof *s);
  atomic_init(&s->refs, 1);
  s->der = xmalloc(len);
  memcpy(s->der, der, len);
  s->len = len;
  s->status = verified->status;
  s->produced_at = verified->produced_at;
  s->this_update = verified->this_update;
  s->next_update = verified->next_update;
  s->valid_until = verified->valid_until;
  return s;
}

struct staple *staple_copy(const struct staple *from) {
  struct staple *s = xmalloc(sizeof *s);
  memcpy(s, from, sizeof *s); /* every field, then the ones a copy must not share */
  atomic_init(&s->refs, 1);
  s->der = xmalloc(from->len);
  memcpy(s->der, from->der, from->len);
  return s;
}

struct staple *staple_ref(struct staple *s) {
  if (s) atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
  return s;
}

void staple_unref(struct staple *s) {
  if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
  free(s->der);
  free(s);
}

bool staple_fresh(const struct staple *s, time_t now) { return s && now < s->valid_until; }
