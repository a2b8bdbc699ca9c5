#include <stdlib.h>

#include "stapler/sockwrite.h"
#include "stapler/util.h"
#include "stapler/worker.h"

#define MAX_IOV 32

struct write_req {
  uv_write_t req;
  struct worker *worker;
  void *owner;
  struct buf *chain;
  size_t bytes;
  sockwrite_done done;
  struct write_req *next_free;
};

static struct write_req *get_req(struct worker *w) {
  struct write_req *r = w->free_write_reqs;
  if (r)
    w->free_write_reqs = r->next_free;
  else
    r = xmalloc(sizeof *r);
  return r;
}

static void put_req(struct worker *w, struct write_req *r) {
  r->next_free = w->free_write_reqs;
  w->free_write_reqs = r;
}

static void on_written(uv_write_t *req, int status) {
  struct write_req *r = CONTAINER_OF(req, struct write_req, req);
  void *owner = r->owner;
  sockwrite_done done = r->done;
  size_t bytes = r->bytes;
  buf_put_chain(r->chain);
  put_req(r->worker, r);
  done(owner, bytes, status);
}

/* Writes up to MAX_IOV buffers from `*chain` in one request and advances `*chain`. */
static void write_some(struct worker *w, uv_stream_t *stream, struct buf **chain,
                       sockwrite_done done, void *owner) {
  uv_buf_t iov[MAX_IOV];
  unsigned n = 0;
  size_t bytes = 0;
  struct buf *first = *chain, *last = NULL;
  for (struct buf *b = first; b && n < MAX_IOV; b = b->next) {
    iov[n++] = uv_buf_init((char *)b->data + b->off, (unsigned)(b->len - b->off));
    bytes += b->len - b->off;
    last = b;
  }
  *chain = last->next;
  last->next = NULL;
  struct write_req *r = get_req(w);
  r->worker = w;
  r->owner = owner;
  r->chain = first;
  r->bytes = bytes;
  r->done = done;
  int rc = uv_write(&r->req, stream, iov, n, on_written);
  if (rc) {
    buf_put_chain(first);
    put_req(w, r);
    done(owner, bytes, rc);
  }
}

/* Writes what the socket takes now from the front of `*chain`, dropping the buffers done. */
static size_t write_now(uv_stream_t *stream, struct buf **chain) {
  size_t written = 0;
  while (*chain) {
    uv_buf_t iov[MAX_IOV];
    unsigned n = 0;
    size_t offered = 0;
    for (struct buf *b = *chain; b && n < MAX_IOV; b = b->next) {
      iov[n++] = uv_buf_init((char *)b->data + b->off, (unsigned)(b->len - b->off));
      offered += b->len - b->off;
    }
    int r = uv_try_write(stream, iov, n);
    if (r <= 0) break; /* would block, or an error the write request will report */
    written += (size_t)r;
    for (size_t left = (size_t)r; left > 0;) {
      struct buf *b = *chain;
      size_t k = MIN(left, b->len - b->off);
      b->off += k;
      left -= k;
      if (b->off == b->len) {
        *chain = b->next;
        buf_put(b);
      }
    }
    if ((size_t)r < offered) break; /* the socket is full */
  }
  return written;
}

size_t sockwrite(struct worker *w, uv_stream_t *stream, struct buf *chain, sockwrite_done done,
                 void *owner) {
  size_t written = write_now(stream, &chain);
  while (chain) write_some(w, stream, &chain, done, owner);
  return written;
}

void sockwrite_free_reqs(struct worker *w) {
  while (w->free_write_reqs) {
    struct write_req *r = w->free_write_reqs;
    w->free_write_reqs = r->next_free;
    free(r);
  }
}
