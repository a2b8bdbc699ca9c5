/* The control thread: starts the workers, handles signals (reload, stop), runs OCSP stapling,
 * ticket key rotation and the admin endpoint, and stops everything in order. */
#ifndef STAPLER_SERVER_H
#define STAPLER_SERVER_H

#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "stapler/admin.h"
#include "stapler/generation.h"
#include "stapler/qsbr.h"
#include "stapler/stapling.h"
#include "stapler/worker.h"

struct server {
  uv_loop_t *loop;
  const char *config_path;  /* NULL for the embedded default: nothing to reload */
  struct generation *gen;   /* current generation; workers get it through their mailbox */
  struct worker *workers;
  unsigned worker_count;
  atomic_uint workers_exited;
  uv_async_t worker_exited;
  uv_async_t worker_applied; /* a worker took a new generation */
  unsigned reload_target;    /* updates each worker must have applied to finish the reload */
  bool reloading, reload_again;
  uv_signal_t sigterm, sigint, sighup;
  uv_timer_t shutdown_timer;
  uv_timer_t ticket_timer;  /* rotates generated ticket keys */
  uv_timer_t churn_timer;   /* tests only: see STAPLER_TEST_CHURN_MS in server.c */
  struct qsbr qsbr;             /* frees staples and ticket keys the workers may be reading */
  _Atomic uint64_t **quiescent; /* each worker's read-section counter, for qsbr */
  struct stapling stapling;     /* fetches and publishes OCSP staples */
  struct admin *admin;          /* NULL when admin is off */
  struct ticket_keys *tickets;  /* the published set (owned by the publication) */
  uint64_t reloads_ok, reloads_failed;
  bool stopping;
  uint64_t stop_deadline_ms; /* uv_hrtime() in ms by which the process should have exited */
};

/* Client connections open now, summed over the workers' own counters. */
size_t server_open_connections(const struct server *s);

/* Binds the listeners, starts the workers and runs until stopped by a signal. Takes the
 * reference to `gen`. `config_path` (may be NULL) is read again on SIGHUP. Returns the process
 * exit code. */
int server_run(struct generation *gen, const char *config_path);

#endif
