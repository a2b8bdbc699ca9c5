/* A worker's keep-alive backend connections: after an exchange whose response and request
 * both ended cleanly, its backend connection waits here for the next exchange to the same
 * address. Most recently used first, so a busy worker keeps few connections warm. An idle
 * connection the backend closes (Cowboy does after a few seconds) leaves the pool at once;
 * one idle longer than backend.keepalive_timeout is closed by a sweep, so stapler rarely
 * writes to a connection the backend is about to close.
 *
 * A connection that began with a PROXY header carries one client's address: it is private to
 * that client's session and never handed to another. */
#ifndef STAPLER_BACKEND_POOL_H
#define STAPLER_BACKEND_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

struct backend_conn;
struct worker;

#define BACKEND_POOL_MAX_IDLE 1024 /* per worker; beyond it the oldest is closed */

struct backend_pool {
  struct worker *worker;
  struct backend_conn *head; /* most recently used first */
  size_t idle_count;
  uint64_t keepalive_ms; /* 0: connections are not reused */
  uv_timer_t sweep;
};

void backend_pool_init(struct backend_pool *p, struct worker *w);
/* Closes every idle connection and the sweep timer (the worker is stopping). */
void backend_pool_close(struct backend_pool *p);
void backend_pool_set_keepalive(struct backend_pool *p, uint64_t keepalive_ms);

/* An idle connection to this address (and for this private owner, or shared when NULL), taken
 * out of the pool; NULL when there is none. */
struct backend_conn *backend_pool_take(struct backend_pool *p, const struct sockaddr *addr,
                                       const char *unix_path, const void *private_to);
/* Keeps `bc` for the next exchange (or closes it when reuse is off or the pool is full). */
void backend_pool_put(struct backend_pool *p, struct backend_conn *bc);
/* Takes `bc` out (it is being closed). */
void backend_pool_remove(struct backend_pool *p, struct backend_conn *bc);
/* Closes the idle connections private to `owner` (its session is ending). */
void backend_pool_close_private(struct backend_pool *p, const void *owner);

#endif
