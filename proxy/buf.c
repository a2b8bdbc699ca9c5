#include "stapler/buf.h"

#include <stdlib.h>
#include <string.h>

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
