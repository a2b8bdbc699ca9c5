/* A worker: one thread, one libuv loop, its own listening sockets (SO_REUSEPORT) and the
 * connections they accept. Workers share nothing mutable; the control thread talks to them
 * through `commands` (drain, stop) and a one-slot mailbox (a new generation to serve). */
#ifndef STAPLER_WORKER_H
#define STAPLER_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "stapler/backend_pool.h"
#include "stapler/buf.h"
#include "stapler/stats.h"

struct server;
struct generation;
struct session;
struct listener;

enum worker_command {
  WORKER_DRAIN = 1 << 0,  /* stop accepting, finish open work, then exit */
  WORKER_STOP = 1 << 1,   /* close everything now, then exit */
  WORKER_UPDATE = 1 << 2, /* take the generation waiting in the mailbox */
};

/* A new generation for a worker. `fds[i]` is a freshly bound socket for the generation's
 * listen entry i, or -1 to keep the worker's own listener for that address. */
struct worker_update {
  struct generation *gen; /* a reference for the worker */
  int *fds;
};

struct worker {
  unsigned id;
  struct server *server;
  uv_loop_t loop;
  uv_thread_t thread;
  uv_async_t wakeup;
  atomic_uint commands;
  pthread_mutex_t mailbox_lock;
  struct worker_update *mailbox;
  atomic_uint updates_applied;
  _Atomic uint64_t reading; /* odd inside a read section of shared objects (see qsbr.h) */
  struct bufpool pool;
  struct generation *gen; /* the generation new connections use; the worker holds a ref */
  struct listener **listeners; /* one per listen entry of `gen` (NULL if it failed) */
  size_t listener_count;
  struct session *sessions; /* every open client session, for draining */
  size_t session_count;
  /* The same count for other threads (the limit check sums every worker's): written only
   * by this worker, so no two threads ever write one cache line on the connection path. */
  _Atomic size_t open_sessions;
  struct backend_pool backend_pool;
  /* Sessions with output to send, written once per loop pass (see session_flush): before
   * polling for what timers and close callbacks produced, after it for what I/O produced. */
  uv_prepare_t flush_before_poll;
  uv_check_t flush_after_poll;
  uv_timer_t pool_trim; /* gives back buffers a past peak left in `pool` */
  struct session *flush_queue;
  bool draining;
  void *free_write_reqs; /* recycled write requests (see sockwrite.c) */
  struct stats stats;
  /* The backend's address when it is given by name: resolved again, asynchronously, after a
   * failed connect (a container that restarted may have a new address). */
  struct sockaddr_storage backend_addr;
  uint64_t backend_resolved_at;
  bool backend_resolving;
};

/* Where new backend connections go for this worker's generation. */
const struct sockaddr *worker_backend_addr(struct worker *w);
/* A connect to the backend failed: look its name up again (at most once a second). */
void worker_backend_failed(struct worker *w);

/* Prepares `w` to serve `gen` on already-bound sockets `fds` (one per listen entry), which it
 * takes. */
void worker_init(struct worker *w, unsigned id, struct server *server, struct generation *gen,
                 const int *fds);
int worker_start(struct worker *w);
/* Asks the worker to drain or stop; safe from any thread. */
void worker_command(struct worker *w, enum worker_command cmd);
/* Hands the worker a new generation (the worker takes `u`); safe from any thread. */
void worker_update(struct worker *w, struct worker_update *u);
/* Joins the thread and frees what the worker owns. */
void worker_join(struct worker *w);

/* A session began or ended; an ended one may let a draining worker finish. */
void worker_session_opened(struct worker *w);
void worker_session_closed(struct worker *w);
/* Client sessions open in the whole process (every worker's count, summed). */
size_t worker_open_total(const struct worker *w);

#endif
