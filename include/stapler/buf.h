/* Fixed-size byte buffers from a per-worker pool, so the data path does not call malloc.
 * A buffer is owned by exactly one holder at a time (a read in progress, a write request,
 * a connection's pending input); buf_put() hands it back to the pool it came from. */
#ifndef STAPLER_BUF_H
#define STAPLER_BUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define BUF_SIZE (32 * 1024)

struct bufpool;

struct buf {
  struct buf *next;     /* free list, or a chain the holder builds */
  struct bufpool *pool; /* where buf_put() returns it */
  size_t len;           /* bytes of data[] in use */
  size_t off;           /* bytes of data[] already consumed by the holder */
  uint8_t data[BUF_SIZE];
};

/* Only the owning worker changes a pool. The two counts are atomics written with relaxed
 * stores by that one thread, so /metrics can read them from another without a lock. */
struct bufpool {
  struct buf *free;
  _Atomic size_t free_count;
  _Atomic size_t in_use; /* handed out and not yet returned, for metrics and leak checks */
  size_t max_free;       /* beyond this, returned buffers are freed at once */
  /* The fewest free buffers since the last bufpool_trim(): that many sat unused all along. */
  size_t low_free;
};

void bufpool_init(struct bufpool *pool, size_t max_free);
void bufpool_destroy(struct bufpool *pool);
/* Frees the buffers that stayed unused since the last call (all but `keep` of them), so
 * memory taken at a peak goes back once the peak is over. Returns how many were freed. */
size_t bufpool_trim(struct bufpool *pool, size_t keep);
/* Safe from any thread. */
size_t bufpool_free_count(const struct bufpool *pool);
size_t bufpool_in_use(const struct bufpool *pool);

struct buf *buf_get(struct bufpool *pool);
void buf_put(struct buf *b);
/* Returns a whole chain (linked by `next`). */
void buf_put_chain(struct buf *b);

/* A queue of buffers; the bytes of each are data[off..len). */
struct bufchain {
  struct buf *head, *tail;
  size_t len; /* total unsent bytes */
};

/* Copies `n` bytes to the end of the chain, filling the last buffer first. */
void bufchain_append(struct bufchain *q, struct bufpool *pool, const uint8_t *data, size_t n);
/* Moves a whole buffer (its data[off..len)) to the end of the chain. */
void bufchain_push(struct bufchain *q, struct buf *b);
/* Detaches and returns the chain's buffers; the queue is left empty. */
struct buf *bufchain_take(struct bufchain *q);
void bufchain_clear(struct bufchain *q);

#endif
