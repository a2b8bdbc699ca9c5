/* The control thread. It binds every listening socket before any worker starts, so a port in
 * use stops the start-up with a clear message, then waits for signals. */
#include "stapler/server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stapler/listener.h"
#include "stapler/log.h"
#include "stapler/util.h"

static void close_fds(int *fds, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= 0) close(fds[i]);
}

/* One socket per worker per listen entry; fds[w * listen_count + i]. */
static int *bind_all(const struct config *cfg, unsigned workers) {
  size_t n = (size_t)workers * cfg->listen_count;
  int *fds = xmalloc(n * sizeof *fds);
  for (size_t k = 0; k < n; k++) fds[k] = -1;
  for (size_t k = 0; k < n; k++) {
    const struct config_listen *l = &cfg->listen[k % cfg->listen_count];
    char err[256];
    fds[k] = listener_bind(l, err, sizeof err);
    if (fds[k] < 0) {
      log_error("cannot listen on %s: %s", l->addr.text, err);
      close_fds(fds, n);
      free(fds);
      return NULL;
    }
  }
  return fds;
}

static void close_control_handles(struct server *s) {
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sighup, NULL);
  uv_close((uv_handle_t *)&s->shutdown_timer, NULL);
  uv_close((uv_handle_t *)&s->worker_exited, NULL);
}

static void on_worker_exited(uv_async_t *a) {
  struct server *s = a->data;
  if (atomic_load(&s->workers_exited) == s->worker_count) close_control_handles(s);
}

static void on_shutdown_timeout(uv_timer_t *t) {
  struct server *s = t->data;
  log_warn("shutdown: timeouts.shutdown reached with %u connection(s) open; closing them",
           atomic_load(&s->open_connections));
  for (unsigned i = 0; i < s->worker_count; i++) worker_command(&s->workers[i], WORKER_STOP);
}

static void begin_shutdown(struct server *s, const char *signame) {
  if (s->stopping) return;
  s->stopping = true;
  stapling_stop(&s->stapling);
  log_info("%s: no longer accepting; draining %u connection(s) for up to %llu ms", signame,
           atomic_load(&s->open_connections),
           (unsigned long long)s->gen->cfg->timeouts.shutdown_ms);
  for (unsigned i = 0; i < s->worker_count; i++) worker_command(&s->workers[i], WORKER_DRAIN);
  uv_timer_start(&s->shutdown_timer, on_shutdown_timeout, s->gen->cfg->timeouts.shutdown_ms, 0);
}

static void on_signal(uv_signal_t *sig, int signum) {
  struct server *s = sig->data;
  if (signum == SIGHUP) {
    log_warn("SIGHUP: configuration reload is not available in this build; ignoring");
    return;
  }
  begin_shutdown(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void watch_signal(struct server *s, uv_signal_t *sig, int signum) {
  uv_signal_init(s->loop, sig);
  sig->data = s;
  uv_signal_start(sig, on_signal, signum);
}

static void log_start(const struct server *s) {
  const struct config *cfg = s->gen->cfg;
  for (size_t i = 0; i < cfg->listen_count; i++)
    log_info("listening on %s", cfg->listen[i].addr.text);
  log_info("forwarding to %s (%s mode), %u worker(s), %zu certificate(s)",
           cfg->backend.addr.text, cfg->backend.mode == BACKEND_MODE_TCP ? "tcp" : "http",
           s->worker_count, s->gen->certs->cert_count);
}

int server_run(struct generation *gen) {
  struct server s;
  memset(&s, 0, sizeof s);
  s.loop = uv_default_loop();
  s.gen = gen;
  s.worker_count = config_worker_count(gen->cfg);
  atomic_init(&s.open_connections, 0);
  atomic_init(&s.workers_exited, 0);
  signal(SIGPIPE, SIG_IGN);

  size_t nl = gen->cfg->listen_count;
  int *fds = bind_all(gen->cfg, s.worker_count);
  if (!fds) {
    generation_unref(gen);
    return 1;
  }
  s.workers = xcalloc(s.worker_count, sizeof *s.workers);
  for (unsigned i = 0; i < s.worker_count; i++)
    worker_init(&s.workers[i], i, &s, gen, fds + (size_t)i * nl, nl);
  free(fds);

  /* Cached staples are loaded before the first connection is accepted. */
  s.quiescent = xcalloc(s.worker_count, sizeof *s.quiescent);
  for (unsigned i = 0; i < s.worker_count; i++) s.quiescent[i] = &s.workers[i].quiescent;
  qsbr_init(&s.qsbr, s.quiescent, s.worker_count);
  stapling_init(&s.stapling, s.loop, &s.qsbr);
  stapling_attach(&s.stapling, gen);

  uv_async_init(s.loop, &s.worker_exited, on_worker_exited);
  s.worker_exited.data = &s;
  uv_timer_init(s.loop, &s.shutdown_timer);
  s.shutdown_timer.data = &s;
  watch_signal(&s, &s.sigterm, SIGTERM);
  watch_signal(&s, &s.sigint, SIGINT);
  watch_signal(&s, &s.sighup, SIGHUP);

  for (unsigned i = 0; i < s.worker_count; i++) worker_start(&s.workers[i]);
  log_start(&s);
  uv_run(s.loop, UV_RUN_DEFAULT);

  for (unsigned i = 0; i < s.worker_count; i++) worker_join(&s.workers[i]);
  qsbr_destroy(&s.qsbr); /* no worker runs any more */
  stapling_free(&s.stapling);
  free(s.quiescent);
  free(s.workers);
  uv_loop_close(s.loop);
  log_info("stopped");
  generation_unref(gen);
  return 0;
}
