/* Accepting by hand on a polled listening socket, pausing when descriptors run out
 * (acceptor.h). */
#include "stapler/acceptor.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_readable(uv_poll_t *p, int status, int events);
static void on_pause_over(uv_timer_t *t);

static void pause_accepting(struct acceptor *a, int err) {
  if (a->paused) return;
  a->paused = true;
  uv_poll_stop(&a->poll);
  uv_timer_start(&a->pause_timer, on_pause_over, ACCEPTOR_PAUSE_MS, 0);
  if (a->on_pause) a->on_pause(a, err);
}

static void on_pause_over(uv_timer_t *t) {
  struct acceptor *a = t->data;
  a->paused = false;
  uv_poll_start(&a->poll, UV_READABLE, on_readable);
}

static void on_readable(uv_poll_t *p, int status, int events) {
  struct acceptor *a = p->data;
  if (status < 0) {
    pause_accepting(a, status); /* the socket is in trouble: look again later, never spin */
    return;
  }
  for (int i = 0; i < ACCEPTOR_BATCH && !a->paused && a->fd >= 0; i++) {
    int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      a->on_accept(a, fd);
      continue;
    }
    switch (errno) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
      return;
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
      continue; /* that connection is gone; others may wait */
    default: /* EMFILE, ENFILE, ENOBUFS, ENOMEM: out of resources */
      pause_accepting(a, -errno);
      return;
    }
  }
}

int acceptor_start(struct acceptor *a, uv_loop_t *loop, int fd, acceptor_accept_fn on_accept,
                   acceptor_pause_fn on_pause) {
  a->fd = fd;
  a->on_accept = on_accept;
  a->on_pause = on_pause;
  a->paused = false;
  int rc = uv_poll_init(loop, &a->poll, fd);
  if (rc) {
    close(fd);
    a->fd = -1;
    return rc;
  }
  uv_timer_init(loop, &a->pause_timer);
  a->poll.data = a->pause_timer.data = a;
  a->open_handles = 2;
  return uv_poll_start(&a->poll, UV_READABLE, on_readable);
}

static void on_handle_closed(uv_handle_t *h) {
  struct acceptor *a = h->data;
  if (--a->open_handles > 0) return;
  if (a->fd >= 0) close(a->fd);
  a->fd = -1;
  if (a->on_closed) a->on_closed(a);
}

void acceptor_close(struct acceptor *a, acceptor_closed_fn on_closed) {
  a->on_closed = on_closed;
  uv_close((uv_handle_t *)&a->poll, on_handle_closed);
  uv_close((uv_handle_t *)&a->pause_timer, on_handle_closed);
}
