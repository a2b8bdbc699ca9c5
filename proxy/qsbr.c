#include "stapler/qsbr.h"

#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "stapler/util.h"

_Thread_local _Atomic uint64_t *qsbr_reader_counter;
unsigned qsbr_test_hold_us;

void qsbr_test_hold(void) { usleep(qsbr_test_hold_us); }

struct qsbr_retired {
  struct qsbr_retired *next;
  void *ptr;
  void (*destroy)(void *);
  uint64_t snapshot[]; /* each worker's counter when the object was retired */
};

void qsbr_init(struct qsbr *q, _Atomic uint64_t **counters, size_t count) {
  q->counters = counters;
  q->count = count;
  q->retired = NULL;
}

void qsbr_retire(struct qsbr *q, void *ptr, void (*destroy)(void *)) {
  if (!ptr) return;
  struct qsbr_retired *r = xmalloc(sizeof *r + q->count * sizeof r->snapshot[0]);
  r->ptr = ptr;
  r->destroy = destroy;
  for (size_t i = 0; i < q->count; i++)
    r->snapshot[i] = atomic_load_explicit(q->counters[i], memory_order_seq_cst);
  r->next = q->retired;
  q->retired = r;
  qsbr_reclaim(q);
}

static bool safe(const struct qsbr *q, const struct qsbr_retired *r) {
  for (size_t i = 0; i < q->count; i++) {
    bool was_reading = r->snapshot[i] & 1;
    if (was_reading &&
        atomic_load_explicit(q->counters[i], memory_order_seq_cst) == r->snapshot[i])
      return false; /* still inside the section it was in at retirement */
  }
  return true;
}

size_t qsbr_reclaim(struct qsbr *q) {
  size_t waiting = 0;
  for (struct qsbr_retired **pp = &q->retired; *pp;) {
    struct qsbr_retired *r = *pp;
    if (safe(q, r)) {
      *pp = r->next;
      r->destroy(r->ptr);
      free(r);
    } else {
      waiting++;
      pp = &r->next;
    }
  }
  return waiting;
}

void qsbr_destroy(struct qsbr *q) {
  while (q->retired) {
    struct qsbr_retired *r = q->retired;
    q->retired = r->next;
    r->destroy(r->ptr);
    free(r);
  }
}
