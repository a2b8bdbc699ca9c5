#include "stapler/buf.h"

#include <stdlib.h>

#include "stapler/util.h"

void bufpool_init(struct bufpool *pool, size_t max_free) {
  pool->free = NULL;
  pool->free_count = 0;
  pool->max_free = max_free;
  pool->in_use = 0;
}

void bufpool_destroy(struct bufpool *pool) {
  while (pool->free) {
    struct buf *b = pool->free;
    pool->free = b->next;
    free(b);
  }
  pool->free_count = 0;
}

struct buf *buf_get(struct bufpool *pool) {
  struct buf *b = pool->free;
  if (b) {
    pool->free = b->next;
    pool->free_count--;
  } else {
    b = xmalloc(sizeof *b);
    b->pool = pool;
  }
  b->next = NULL;
  b->len = 0;
  b->off = 0;
  pool->in_use++;
  return b;
}

void buf_put(struct buf *b) {
  struct bufpool *pool = b->pool;
  pool->in_use--;
  if (pool->free_count >= pool->max_free) {
    free(b);
    return;
  }
  b->next = pool->free;
  pool->free = b;
  pool->free_count++;
}

void buf_put_chain(struct buf *b) {
  while (b) {
    struct buf *next = b->next;
    buf_put(b);
    b = next;
  }
}
