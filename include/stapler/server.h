/* The control thread: starts the workers, handles signals, stops everything in order. */
#ifndef STAPLER_SERVER_H
#define STAPLER_SERVER_H

#include <stdatomic.h>
#include <uv.h>

#include "stapler/generation.h"
#include "stapler/qsbr.h"
#include "stapler/stapling.h"
#include "stapler/worker.h"

struct server {
  uv_loop_t *loop;
  struct generation *gen; /* current generation */
  struct worker *workers;
  unsigned worker_count;
  atomic_uint workers_exited;
  uv_async_t worker_exited;
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t shutdown_timer;
  atomic_uint open_connections;
  struct qsbr qsbr;            /* frees staples the workers may still be reading */
  _Atomic uint64_t **quiescent; /* each worker's counter, for qsbr */
  struct stapling stapling;    /* fetches and publishes OCSP staples */
  bool stopping;
};

/* Binds the listeners, starts the workers and runs until stopped by a signal. Takes the
 * reference to `gen`. Returns the process exit code. */
int server_run(struct generation *gen);

#endif
