/* Listening sockets. They are bound in the control thread, where errors can still stop the
 * start-up, one per worker with SO_REUSEPORT so the kernel spreads connections. */
#ifndef STAPLER_LISTENER_H
#define STAPLER_LISTENER_H

#include <stddef.h>
#include <uv.h>

#include "stapler/config.h"

struct worker;

struct listener {
  uv_tcp_t handle;
  struct worker *worker;
  size_t index;       /* which listen entry of the config */
  uint16_t port;      /* for X-Forwarded-Port */
  bool open;
};

/* Creates, binds and listens on a socket for `cfg`. Returns the fd, or -1 with `err` filled. */
int listener_bind(const struct config_listen *cfg, char *err, size_t errlen);

/* Starts accepting on `fd` in the worker's loop. */
int listener_start(struct listener *l, struct worker *w, size_t index, int fd);
/* Stops accepting and closes the socket. */
void listener_stop(struct listener *l);

#endif
