/* A worker: one thread, one libuv loop, its own listening sockets (SO_REUSEPORT) and the
 * connections they accept. Workers share nothing mutable; the control thread talks to them
 * through `commands` and `wakeup`. */
#ifndef STAPLER_WORKER_H
#define STAPLER_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "stapler/buf.h"
#include "stapler/stats.h"

struct server;
struct generation;
struct conn;
struct listener;

enum worker_command {
  WORKER_DRAIN = 1 << 0, /* stop accepting, finish open work, then exit */
  WORKER_STOP = 1 << 1,  /* close everything now, then exit */
};

struct worker {
  unsigned id;
  struct server *server;
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t wakeup;
  atomic_uint commands;
  uv_prepare_t before_poll; /* both bump `quiescent` (see qsbr.h) */
  uv_check_t after_poll;
  _Atomic uint64_t quiescent;
  struct bufpool pool;
  struct generation *gen; /* the generation new connections use; the worker holds a ref */
  struct listener *listeners;
  size_t listener_count;
  struct conn *conns; /* every open connection, for draining */
  size_t conn_count;
  bool draining;
  void *free_write_reqs; /* recycled write requests (see conn_io.c) */
  struct stats stats;
};

/* Prepares `w` to serve `gen` on already-bound listening sockets `fds` (one per listen entry).
 * The worker owns the sockets from here on. */
void worker_init(struct worker *w, unsigned id, struct server *server, struct generation *gen,
                 const int *fds, size_t fd_count);
/* Starts the worker's thread. */
int worker_start(struct worker *w);
/* Asks the worker to drain or stop; safe from any thread. */
void worker_command(struct worker *w, enum worker_command cmd);
/* Joins the thread and frees what the worker owns. */
void worker_join(struct worker *w);

/* Called by a connection when it is gone, to let a draining worker finish. */
void worker_conn_closed(struct worker *w);

#endif
