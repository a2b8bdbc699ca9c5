/* Reclamation of objects workers may be reading (qsbr.h): the rule on counters, then a real
 * worker thread held inside a read section while the control side retires what it reads. Run
 * under ThreadSanitizer and AddressSanitizer as well. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "stapler/qsbr.h"
#include "testing.h"

static int destroyed;
static void count_destroy(void *p) { destroyed++; }

static void test_only_a_change_or_an_even_counter_proves_quiescence(void) {
  _Atomic uint64_t a = 0, b = 0;
  _Atomic uint64_t *counters[] = {&a, &b};
  struct qsbr q;
  qsbr_init(&q, counters, 2);
  destroyed = 0;
  int obj;
  qsbr_retire(&q, &obj, count_destroy); /* nobody inside a read section: freed at once */
  CHECK_EQ_INT(destroyed, 1);
  atomic_store(&a, 1); /* a is inside a section; b is idle (in poll, say) */
  qsbr_retire(&q, &obj, count_destroy);
  CHECK_EQ_INT(destroyed, 1);
  CHECK_EQ_INT(qsbr_reclaim(&q), 1); /* b idle for ever does not hold it back; a does */
  atomic_store(&a, 2);               /* a left */
  CHECK_EQ_INT(qsbr_reclaim(&q), 0);
  CHECK_EQ_INT(destroyed, 2);
  atomic_store(&a, 3); /* inside again when the next object is retired */
  qsbr_retire(&q, &obj, count_destroy);
  atomic_store(&a, 5); /* left, and entered another section: the count moved, it is safe */
  CHECK_EQ_INT(qsbr_reclaim(&q), 0);
  CHECK_EQ_INT(destroyed, 3);
  atomic_store(&a, 7);
  qsbr_retire(&q, &obj, count_destroy);
  qsbr_destroy(&q); /* no worker runs any more */
  CHECK_EQ_INT(destroyed, 4);
}

/* A published object as workers see it. */
struct shared {
  int magic;
};
#define MAGIC 0x5ad1e

static _Atomic(struct shared *) published;
static _Atomic int step;
static _Atomic uint64_t reader_counter;
static int reader_saw;

static void wait_step(int want) {
  while (atomic_load(&step) < want) sched_yield();
}

static void *reader(void *arg) {
  qsbr_register_reader(&reader_counter);
  qsbr_read_begin();
  struct shared *s = atomic_load_explicit(&published, memory_order_seq_cst);
  atomic_store(&step, 1); /* inside, holding `s` */
  wait_step(2);           /* the control side has swapped and retired it meanwhile */
  reader_saw = s->magic;  /* a use after free here is an ASan report */
  qsbr_read_end();
  atomic_store(&step, 3);
  return NULL;
}

static void free_shared(void *p) {
  ((struct shared *)p)->magic = 0;
  free(p);
  destroyed++;
}

static void test_object_survives_while_a_worker_holds_it(void) {
  _Atomic uint64_t *counters[] = {&reader_counter};
  struct qsbr q;
  qsbr_init(&q, counters, 1);
  destroyed = 0;
  struct shared *first = malloc(sizeof *first);
  first->magic = MAGIC;
  atomic_store(&published, first);
  pthread_t t;
  pthread_create(&t, NULL, reader, NULL);
  wait_step(1);
  struct shared *second = malloc(sizeof *second);
  second->magic = MAGIC;
  qsbr_retire(&q, atomic_exchange_explicit(&published, second, memory_order_seq_cst),
              free_shared);
  CHECK_EQ_INT(destroyed, 0);
  CHECK_EQ_INT(qsbr_reclaim(&q), 1); /* still held */
  atomic_store(&step, 2);
  wait_step(3);
  pthread_join(t, NULL);
  CHECK_EQ_INT(reader_saw, MAGIC);
  CHECK_EQ_INT(qsbr_reclaim(&q), 0);
  CHECK_EQ_INT(destroyed, 1);
  free(atomic_exchange(&published, NULL));
  qsbr_destroy(&q);
}

/* Many rounds of the race itself: readers loop over read sections while the control side
 * swaps and retires as fast as it can. Every object a reader sees must be whole. */
#define READERS 2
#define ROUNDS 20000

static _Atomic uint64_t counters_many[READERS];
static _Atomic int stop_readers;
static _Atomic long bad;

static void *busy_reader(void *arg) {
  qsbr_register_reader(&counters_many[(long)arg]);
  while (!atomic_load(&stop_readers)) {
    qsbr_read_begin();
    struct shared *s = atomic_load_explicit(&published, memory_order_seq_cst);
    if (s && s->magic != MAGIC) atomic_fetch_add(&bad, 1);
    qsbr_read_end();
  }
  return NULL;
}

static void test_swap_storm(void) {
  _Atomic uint64_t *counters[READERS];
  for (int i = 0; i < READERS; i++) counters[i] = &counters_many[i];
  struct qsbr q;
  qsbr_init(&q, counters, READERS);
  destroyed = 0;
  struct shared *s0 = malloc(sizeof *s0);
  s0->magic = MAGIC;
  atomic_store(&published, s0);
  pthread_t t[READERS];
  for (long i = 0; i < READERS; i++) pthread_create(&t[i], NULL, busy_reader, (void *)i);
  for (int i = 0; i < ROUNDS; i++) {
    struct shared *n = malloc(sizeof *n);
    n->magic = MAGIC;
    qsbr_retire(&q, atomic_exchange_explicit(&published, n, memory_order_seq_cst), free_shared);
    qsbr_reclaim(&q);
  }
  atomic_store(&stop_readers, 1);
  for (int i = 0; i < READERS; i++) pthread_join(t[i], NULL);
  CHECK_EQ_INT(atomic_load(&bad), 0);
  free(atomic_exchange(&published, NULL));
  qsbr_destroy(&q);
  CHECK_EQ_INT(destroyed, ROUNDS);
}

TEST_MAIN({
  RUN(test_only_a_change_or_an_even_counter_proves_quiescence);
  RUN(test_object_survives_while_a_worker_holds_it);
  RUN(test_swap_storm);
})
