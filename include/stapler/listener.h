/* Listening sockets. They are bound in the control thread, where errors can still stop the
 * start-up or a reload, one per worker with SO_REUSEPORT so the kernel spreads connections.
 * A worker's listener is identified by its configured address across reloads. */
#ifndef STAPLER_LISTENER_H
#define STAPLER_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "stapler/acceptor.h"
#include "stapler/config.h"

struct worker;

struct listener {
  struct acceptor acceptor;
  struct worker *worker;
  char *address;       /* as configured */
  uint16_t port;       /* for X-Forwarded-Port */
  bool proxy_protocol; /* a PROXY header comes before the TLS handshake */
};

/* Checks that no other process listens on `cfg`'s address (unless listen[].reuse_port says
 * sharing is wanted). False with `err` filled. */
bool listener_probe(const struct config_listen *cfg, char *err, size_t errlen);
/* Creates, binds and listens on a socket for `cfg`. Returns the fd, or -1 with `err` filled. */
int listener_bind(const struct config_listen *cfg, char *err, size_t errlen);

/* Starts accepting on `fd` (which it takes) in the worker's loop. NULL on failure. */
struct listener *listener_start(struct worker *w, const struct config_listen *cfg, int fd);
/* Takes a reloaded entry's settings for the same address. */
void listener_update(struct listener *l, const struct config_listen *cfg);
/* Stops accepting; the socket is closed and the listener freed asynchronously. */
void listener_stop(struct listener *l);

#endif
