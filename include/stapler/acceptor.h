/* Accepting connections on a listening socket without ever spinning. libuv's own accept loop
 * calls back again at once after EMFILE, forever, when its spare descriptor is gone (several
 * loops compete for the last ones): the loop then never returns to signals or timers. Here
 * the socket is polled and accepted by hand; when the process runs out of descriptors the
 * acceptor stops polling for ACCEPTOR_PAUSE_MS (as nginx does), tells its owner once, and
 * resumes. Connections waiting meanwhile stay in the kernel's queue. */
#ifndef STAPLER_ACCEPTOR_H
#define STAPLER_ACCEPTOR_H

#include <stdbool.h>
#include <uv.h>

#define ACCEPTOR_PAUSE_MS 500
#define ACCEPTOR_BATCH 64 /* accepts per wake-up, so one listener cannot hog its loop */

struct acceptor;

/* A new connection: `fd` (non-blocking, close-on-exec) belongs to the callee. */
typedef void (*acceptor_accept_fn)(struct acceptor *a, int fd);
/* Accepting paused for lack of descriptors (`err` is a libuv error: UV_EMFILE, ...). */
typedef void (*acceptor_pause_fn)(struct acceptor *a, int err);
typedef void (*acceptor_closed_fn)(struct acceptor *a);

struct acceptor {
  uv_poll_t poll;
  uv_timer_t pause_timer;
  int fd;
  int open_handles;
  bool paused;
  acceptor_accept_fn on_accept;
  acceptor_pause_fn on_pause;
  acceptor_closed_fn on_closed;
  void *data; /* the owner's */
};

/* Starts accepting on the listening socket `fd`, which the acceptor takes. Returns 0 or a
 * libuv error; after an error the acceptor still needs acceptor_close() when open_handles is
 * not 0 (the socket is closed either way). */
int acceptor_start(struct acceptor *a, uv_loop_t *loop, int fd, acceptor_accept_fn on_accept,
                   acceptor_pause_fn on_pause);
/* Stops and closes the socket; `on_closed` (may be NULL) runs when the handles are closed, and
 * the acceptor's memory may be freed there. */
void acceptor_close(struct acceptor *a, acceptor_closed_fn on_closed);

#endif
