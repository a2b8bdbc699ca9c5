#include "stapler/buf.h"

#include <stdlib.h>
#include <string.h>

#include "stapler/util.h"

/* The owner's view of a count, and its update: one writer, so a relaxed load and store. */
static size_t count_of(const _Atomic size_t *c) {
  return atomic_load_explicit((_Atomic size_t *)c, memory_order_relaxed);
}

static void count_set(_Atomic size_t *c, size_t v) {
  atomic_store_explicit(c, v, memory_order_relaxed);
}

void bufpool_init(struct bufpool *pool, size_t max_free) {
  pool->free = NULL;
  atomic_init(&pool->free_count, 0);
  atomic_init(&pool->in_use, 0);
  pool->max_free = max_free;
  pool->low_free = 0;
}

void bufpool_destroy(struct bufpool *pool) {
  while (pool->free) {
    struct buf *b = pool->free;
    pool->free = b->next;
    free(b);
  }
  count_set(&pool->free_count, 0);
}

size_t bufpool_trim(struct bufpool *pool, size_t keep) {
  size_t free_count = count_of(&pool->free_count);
  size_t idle = MIN(pool->low_free, free_count);
  size_t n = idle > keep ? idle - keep : 0;
  for (size_t i = 0; i < n; i++) {
    struct buf *b = pool->free;
    pool->free = b->next;
    free(b);
  }
  count_set(&pool->free_count, free_count - n);
  pool->low_free = free_count - n;
  return n;
}

size_t bufpool_free_count(const struct bufpool *pool) { return count_of(&pool->free_count); }

size_t bufpool_in_use(const struct bufpool *pool) { return count_of(&pool->in_use); }

struct buf *buf_get(struct bufpool *pool) {
  struct buf *b = pool->free;
  if (b) {
    size_t free_count = count_of(&pool->free_count) - 1;
    pool->free = b->next;
    count_set(&pool->free_count, free_count);
    if (free_count < pool->low_free) pool->low_free = free_count;
  } else {
    b = xmalloc(sizeof *b);
    b->pool = pool;
  }
  b->next = NULL;
  b->len = 0;
  b->off = 0;
  count_set(&pool->in_use, count_of(&pool->in_use) + 1);
  return b;
}

void buf_put(struct buf *b) {
  struct bufpool *pool = b->pool;
  count_set(&pool->in_use, count_of(&pool->in_use) - 1);
  size_t free_count = count_of(&pool->free_count);
  if (free_count >= pool->max_free) {
    free(b);
    return;
  }
  b->next = pool->free;
  pool->free = b;
  count_set(&pool->free_count, free_count + 1);
}

void buf_put_chain(struct buf *b) {
  while (b) {
    struct buf *next = b->next;
    buf_put(b);
    b = next;
  }
}

void bufchain_append(struct bufchain *q, struct bufpool *pool, const uint8_t *data, size_t n) {
  q->len += n;
  while (n > 0) {
    struct buf *tail = q->tail;
    if (!tail || tail->len == BUF_SIZE) {
      tail = buf_get(pool);
      if (q->tail)
        q->tail->next = tail;
      else
        q->head = tail;
      q->tail = tail;
    }
    size_t k = MIN(n, BUF_SIZE - tail->len);
    memcpy(tail->data + tail->len, data, k);
    tail->len += k;
    data += k;
    n -= k;
  }
}

void bufchain_push(struct bufchain *q, struct buf *b) {
  b->next = NULL;
  q->len += b->len - b->off;
  if (q->tail)
    q->tail->next = b;
  else
    q->head = b;
  q->tail = b;
}

struct buf *bufchain_take(struct bufchain *q) {
  struct buf *head = q->head;
  q->head = q->tail = NULL;
  q->len = 0;
  return head;
}

void bufchain_clear(struct bufchain *q) { buf_put_chain(bufchain_take(q)); }
