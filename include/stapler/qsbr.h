/* Freeing objects that worker threads may be reading, with no lock or reference count on the
 * workers' side (quiescent-state-based reclamation).
 *
 * Each worker owns a counter it increments twice per loop iteration: just before it blocks in
 * poll (the counter becomes odd) and just after it wakes (even again). Workers only read shared
 * pointers inside callbacks, so an odd counter, or any change since an object was retired,
 * proves the worker holds no reference from before. The control thread retires replaced
 * objects and frees them once every worker has given such proof. */
#ifndef STAPLER_QSBR_H
#define STAPLER_QSBR_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct qsbr_retired;

struct qsbr {
  _Atomic uint64_t **counters; /* one per worker, owned by the workers */
  size_t count;
  struct qsbr_retired *retired; /* control thread only */
};

void qsbr_init(struct qsbr *q, _Atomic uint64_t **counters, size_t count);
/* Frees `ptr` with `destroy` once no worker can still be reading it. Control thread only. */
void qsbr_retire(struct qsbr *q, void *ptr, void (*destroy)(void *));
/* Frees what is safe now; returns how many objects are still waiting. */
size_t qsbr_reclaim(struct qsbr *q);
/* Frees everything: call only when no worker runs any more. */
void qsbr_destroy(struct qsbr *q);

/* The worker's side: call before blocking and after waking. */
static inline void qsbr_quiescent(_Atomic uint64_t *counter) {
  atomic_fetch_add_explicit(counter, 1, memory_order_seq_cst);
}

#endif
