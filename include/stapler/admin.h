/* The admin endpoint: plain HTTP on admin.address (loopback by default), served on the control
 * thread. GET /metrics, /healthz, /status; anything else 404; one request per connection. */
#ifndef STAPLER_ADMIN_H
#define STAPLER_ADMIN_H

#include <stdbool.h>
#include <uv.h>

#include "stapler/acceptor.h"
#include "stapler/config.h"

struct server;

struct admin {
  struct acceptor acceptor;
  struct server *server;
  char address[128];
};

/* Starts listening on the control loop. NULL with `err` when the address cannot be bound. */
struct admin *admin_start(struct server *s, const struct config_addr *addr, char *err,
                          size_t err_len);
/* Stops listening; the admin is freed asynchronously (answers under way still complete). */
void admin_stop(struct admin *a);

#endif
