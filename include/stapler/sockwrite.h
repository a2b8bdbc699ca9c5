/* Handing buffer chains to a libuv stream. A chain is first offered to the socket directly
 * (uv_try_write): usually it all goes, with no write request and no callback. This matters:
 * libuv 1.44 re-arms the epoll registration each time a write request completes, one extra
 * system call per write. What the socket does not take waits in write requests, recycled per
 * worker; their buffers return to the pool when the write completes (or is cancelled by
 * uv_close, which calls `done` with UV_ECANCELED before the handle's close callback). */
#ifndef STAPLER_SOCKWRITE_H
#define STAPLER_SOCKWRITE_H

#include <stddef.h>
#include <uv.h>

#include "stapler/buf.h"

struct worker;

/* `owner` gets back `bytes` written through a request, with its status. */
typedef void (*sockwrite_done)(void *owner, size_t bytes, int status);

/* Sends `chain` (taking it). Returns the bytes written at once, for which `done` is not
 * called; the rest completes through `done`. */
size_t sockwrite(struct worker *w, uv_stream_t *stream, struct buf *chain, sockwrite_done done,
                 void *owner);
/* Frees the worker's recycled write requests (at exit). */
void sockwrite_free_reqs(struct worker *w);

#endif
