/* Freeing objects that worker threads may be reading, with no lock and no reference count on
 * the workers' side.
 *
 * Workers read the shared objects the control thread replaces (staples, ticket keys) only
 * inside read sections: the select-certificate and ticket callbacks, each bracketed by
 * qsbr_read_begin() and qsbr_read_end(). Every worker owns a counter it increments at both
 * ends, so the counter is odd exactly while the worker is inside a section.
 *
 * The control thread first unpublishes an object (an atomic swap), then retires it here, which
 * notes each worker's counter. The object is freed once every worker has shown it cannot hold
 * it: its counter was even at retirement (it was outside any section, so any section it enters
 * later loads the pointer after the swap: both are sequentially consistent), or its counter has
 * changed since (it left the section it was in). Only these two facts prove anything; an idle
 * worker blocked in poll has an even counter, so nothing waits for it to wake up. */
#ifndef STAPLER_QSBR_H
#define STAPLER_QSBR_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct qsbr_retired;

struct qsbr {
  _Atomic uint64_t **counters; /* one per worker, written only by that worker */
  size_t count;
  struct qsbr_retired *retired; /* control thread only */
};

void qsbr_init(struct qsbr *q, _Atomic uint64_t **counters, size_t count);
/* Frees `ptr` with `destroy` once no worker can still be reading it. `ptr` must already be
 * unpublished. Control thread only. */
void qsbr_retire(struct qsbr *q, void *ptr, void (*destroy)(void *));
/* Frees what is safe now; returns how many objects are still waiting. */
size_t qsbr_reclaim(struct qsbr *q);
/* Frees everything: call only when no worker runs any more. */
void qsbr_destroy(struct qsbr *q);

/* The worker's side. A thread registers its counter once; threads that never do (the control
 * thread, which owns the objects; command-line tools) read without marking anything. */
extern _Thread_local _Atomic uint64_t *qsbr_reader_counter;

static inline void qsbr_register_reader(_Atomic uint64_t *counter) {
  qsbr_reader_counter = counter;
}

static inline void qsbr_read_begin(void) {
  if (qsbr_reader_counter) atomic_fetch_add_explicit(qsbr_reader_counter, 1, memory_order_seq_cst);
}

/* Tests only (STAPLER_TEST_CHURN_MS): every read section lasts at least this long, so races
 * with reclamation are provoked, not merely possible. Set before any worker starts. */
extern unsigned qsbr_test_hold_us;
void qsbr_test_hold(void);

static inline void qsbr_read_end(void) {
  if (qsbr_test_hold_us) qsbr_test_hold();
  if (qsbr_reader_counter) atomic_fetch_add_explicit(qsbr_reader_counter, 1, memory_order_seq_cst);
}

#endif
