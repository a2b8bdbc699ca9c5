/* The control thread. It binds every listening socket before any worker starts, so a port in
 * use stops the start-up with a clear message, then waits for signals. */
#include "stapler/server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stapler/listener.h"
#include "stapler/log.h"
#include "stapler/preflight.h"
#include "stapler/tickets.h"
#include "stapler/tls.h"
#include "stapler/util.h"

/* At exit, what a working stderr needs at most to take the log lines still queued. */
#define LOG_FLUSH_MIN_MS 1000

static void close_fds(int *fds, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= 0) close(fds[i]);
}

/* Binds one socket per worker for each entry of `cfg` that `old` (may be NULL) does not already
 * listen on; fds[w * listen_count + i], -1 where the worker keeps its socket. NULL on error. */
static int *bind_listeners(const struct config *cfg, const struct config *old,
                           unsigned workers) {
  size_t nl = cfg->listen_count, n = (size_t)workers * nl;
  int *fds = xmalloc((n ? n : 1) * sizeof *fds);
  for (size_t k = 0; k < n; k++) fds[k] = -1;
  for (size_t i = 0; i < nl; i++) {
    const struct config_listen *l = &cfg->listen[i];
    bool kept = false;
    for (size_t j = 0; old && j < old->listen_count && !kept; j++)
      kept = !strcmp(old->listen[j].addr.text, l->addr.text);
    char err[256];
    if (!kept && !listener_probe(l, err, sizeof err)) {
      log_error("cannot listen on %s: %s", l->addr.text, err);
      close_fds(fds, n);
      free(fds);
      return NULL;
    }
    for (unsigned w = 0; w < workers && !kept; w++) {
      int fd = listener_bind(l, err, sizeof err);
      if (fd < 0) {
        log_error("cannot listen on %s: %s%s", l->addr.text, err,
                  preflight_bind_hint(&l->addr, errno));
        close_fds(fds, n);
        free(fds);
        return NULL;
      }
      fds[(size_t)w * nl + i] = fd;
    }
  }
  return fds;
}

/* ---- ticket keys --------------------------------------------------------------------------*/

/* Makes `keys` the set handshakes use; the old one is freed once no worker reads it. */
static void publish_tickets(struct server *s, struct ticket_keys *keys) {
  s->tickets = keys;
  qsbr_retire(&s->qsbr, tickets_publish(keys), tickets_free);
}

static void on_ticket_rotation(uv_timer_t *t) {
  struct server *s = t->data;
  publish_tickets(s, tickets_rotate(s->tickets));
  log_debug("session ticket keys rotated");
}

/* Tests only: with STAPLER_TEST_CHURN_MS, every staple and the ticket key set are replaced by
 * equal copies in bursts this often, so handshakes on the workers race with reclamation
 * (qsbr.h) the whole time instead of twice a day. Never set in production. */
static void on_churn(uv_timer_t *t) {
  struct server *s = t->data;
  for (int i = 0; i < 16; i++) { /* a burst: a retirement every few microseconds */
    stapling_republish(&s->stapling);
    if (s->tickets) publish_tickets(s, tickets_copy(s->tickets));
    qsbr_reclaim(&s->qsbr);
  }
}

/* Before the workers start: read sections are held open while staples churn. */
static void prepare_churn(void) {
  const char *ms = getenv("STAPLER_TEST_CHURN_MS");
  if (ms && atoi(ms) > 0) qsbr_test_hold_us = 200;
}

static void start_churn(struct server *s) {
  const char *ms = getenv("STAPLER_TEST_CHURN_MS");
  if (!ms || atoi(ms) <= 0) return;
  log_warn("STAPLER_TEST_CHURN_MS=%s: replacing staples and ticket keys continuously (tests "
           "only)", ms);
  uv_timer_start(&s->churn_timer, on_churn, (uint64_t)atoi(ms), (uint64_t)atoi(ms));
}

/* The key file when configured (checked), else generated keys rotated every 12 hours. */
static bool setup_tickets(struct server *s, const struct config *cfg) {
  if (!cfg->tls.session_tickets) return true;
  if (cfg->tls.ticket_key_file) {
    char err[512];
    struct ticket_keys *keys = tickets_load_file(cfg->tls.ticket_key_file, err, sizeof err);
    if (!keys) {
      log_error("%s", err);
      return false;
    }
    uv_timer_stop(&s->ticket_timer);
    publish_tickets(s, keys);
    return true;
  }
  if (!uv_is_active((uv_handle_t *)&s->ticket_timer)) {
    publish_tickets(s, tickets_rotate(NULL));
    uv_timer_start(&s->ticket_timer, on_ticket_rotation, TICKET_ROTATE_SECONDS * 1000ull,
                   TICKET_ROTATE_SECONDS * 1000ull);
  }
  return true;
}

/* ---- admin ---------------------------------------------------------------------------------*/

static bool same_admin(const struct config *a, const struct config *b) {
  if (a->admin.enabled != b->admin.enabled) return false;
  return !a->admin.enabled || !strcmp(a->admin.addr.text, b->admin.addr.text);
}

/* Starts the admin endpoint `cfg` asks for into *out. False when it cannot be bound. */
static bool start_admin(struct server *s, const struct config *cfg, struct admin **out) {
  *out = NULL;
  if (!cfg->admin.enabled) return true;
  char err[256];
  *out = admin_start(s, &cfg->admin.addr, err, sizeof err);
  if (!*out) log_error("admin endpoint: %s", err);
  return *out != NULL;
}

/* ---- reload ----------------------------------------------------------------------------------*/

/* Hands `gen` to every worker. They take it when their loop next runs and say so through
 * `worker_applied`; the control loop goes on meanwhile (OCSP timers, the admin endpoint). */
static void update_workers(struct server *s, struct generation *gen, const int *fds) {
  size_t nl = gen->cfg->listen_count;
  s->reload_target++;
  for (unsigned i = 0; i < s->worker_count; i++) {
    struct worker_update *u = xmalloc(sizeof *u);
    u->gen = generation_ref(gen);
    u->fds = xmalloc((nl ? nl : 1) * sizeof *u->fds);
    memcpy(u->fds, fds + (size_t)i * nl, nl * sizeof *u->fds);
    worker_update(&s->workers[i], u);
  }
}

static void reload(struct server *s);

/* A worker took a new generation. When all have, the reload is done; a SIGHUP that came
 * meanwhile runs now (reloads never overlap: each builds on the one before). */
static void on_worker_applied(uv_async_t *a) {
  struct server *s = a->data;
  if (!s->reloading) return;
  for (unsigned i = 0; i < s->worker_count; i++)
    if (atomic_load(&s->workers[i].updates_applied) < s->reload_target) return;
  s->reloading = false;
  s->reloads_ok++;
  log_info("reloaded: generation %u, %zu certificate(s), %zu listen address(es)", s->gen->id,
           s->gen->certs->cert_count, s->gen->cfg->listen_count);
  if (s->reload_again && !s->stopping) {
    s->reload_again = false;
    reload(s);
  }
}

static struct generation *load_next(struct server *s) {
  struct strlist errors = {0}, warnings = {0};
  struct generation *gen =
      generation_load(s->gen->id + 1, s->config_path, wall_now(), &errors, &warnings);
  log_strlist(LOG_WARN, "", &warnings);
  log_strlist(LOG_ERROR, "reload refused: ", &errors);
  strlist_free(&errors);
  strlist_free(&warnings);
  return gen;
}

static void reload(struct server *s) {
  if (!s->config_path) {
    log_warn("SIGHUP: running the built-in default, there is no file to reload");
    return;
  }
  if (s->reloading) {
    log_info("SIGHUP: a reload is under way; reloading again once the workers have it");
    s->reload_again = true;
    return;
  }
  log_info("SIGHUP: reloading %s", s->config_path);
  struct generation *gen = load_next(s);
  int *fds = gen ? bind_listeners(gen->cfg, s->gen->cfg, s->worker_count) : NULL;
  struct admin *admin = s->admin;
  bool admin_changed = gen && !same_admin(s->gen->cfg, gen->cfg);
  bool ok = fds && (!admin_changed || start_admin(s, gen->cfg, &admin)) &&
            setup_tickets(s, gen->cfg);
  if (!ok) {
    if (admin != s->admin) admin_stop(admin);
    if (fds) close_fds(fds, (size_t)s->worker_count * gen->cfg->listen_count);
    free(fds);
    generation_unref(gen);
    s->reloads_failed++;
    log_error("reload refused: the running configuration (generation %u) stays in use",
              s->gen->id);
    return;
  }
  if (admin_changed) {
    admin_stop(s->admin);
    s->admin = admin;
  }
  if (config_worker_count(gen->cfg) != s->worker_count)
    log_warn("workers: the number of worker threads changes only at restart");
  stapling_attach(&s->stapling, gen);
  s->reloading = true;
  update_workers(s, gen, fds);
  free(fds);
  generation_unref(s->gen);
  s->gen = gen;
  log_configure(gen->cfg->log.level, gen->cfg->log.format);
}

/* ---- stopping --------------------------------------------------------------------------------*/

static void close_control_handles(struct server *s) {
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sighup, NULL);
  uv_close((uv_handle_t *)&s->shutdown_timer, NULL);
  uv_close((uv_handle_t *)&s->ticket_timer, NULL);
  uv_close((uv_handle_t *)&s->churn_timer, NULL);
  uv_close((uv_handle_t *)&s->worker_exited, NULL);
  uv_close((uv_handle_t *)&s->worker_applied, NULL);
}

static void on_worker_exited(uv_async_t *a) {
  struct server *s = a->data;
  if (atomic_load(&s->workers_exited) == s->worker_count) close_control_handles(s);
}

static void on_shutdown_timeout(uv_timer_t *t) {
  struct server *s = t->data;
  log_warn("shutdown: timeouts.shutdown reached with %zu connection(s) open; closing them",
           server_open_connections(s));
  for (unsigned i = 0; i < s->worker_count; i++) worker_command(&s->workers[i], WORKER_STOP);
}

static void begin_shutdown(struct server *s, const char *signame) {
  if (s->stopping) return;
  s->stopping = true;
  s->stop_deadline_ms = uv_hrtime() / 1000000 + s->gen->cfg->timeouts.shutdown_ms;
  stapling_stop(&s->stapling);
  admin_stop(s->admin);
  s->admin = NULL;
  uv_timer_stop(&s->ticket_timer);
  uv_timer_stop(&s->churn_timer);
  log_info("%s: no longer accepting; draining %zu connection(s) for up to %llu ms", signame,
           server_open_connections(s),
           (unsigned long long)s->gen->cfg->timeouts.shutdown_ms);
  for (unsigned i = 0; i < s->worker_count; i++) worker_command(&s->workers[i], WORKER_DRAIN);
  uv_timer_start(&s->shutdown_timer, on_shutdown_timeout, s->gen->cfg->timeouts.shutdown_ms, 0);
}

static void on_signal(uv_signal_t *sig, int signum) {
  struct server *s = sig->data;
  if (signum != SIGHUP)
    begin_shutdown(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
  else if (!s->stopping)
    reload(s);
}

size_t server_open_connections(const struct server *s) {
  size_t total = 0;
  for (unsigned i = 0; i < s->worker_count; i++)
    total += atomic_load_explicit(&s->workers[i].open_sessions, memory_order_relaxed);
  return total;
}

/* ---- running ---------------------------------------------------------------------------------*/

/* How long the log writer may take to write out what is queued: what is left of
 * timeouts.shutdown, so that a stuck stderr cannot hold the exit beyond it, but never less than
 * LOG_FLUSH_MIN_MS, which a working stderr needs at most. */
static uint64_t log_flush_time(const struct server *s) {
  uint64_t now = uv_hrtime() / 1000000;
  uint64_t left = s->stop_deadline_ms > now ? s->stop_deadline_ms - now : 0;
  return MAX(left, LOG_FLUSH_MIN_MS);
}

static void watch_signal(struct server *s, uv_signal_t *sig, int signum) {
  uv_signal_init(s->loop, sig);
  sig->data = s;
  uv_signal_start(sig, on_signal, signum);
}

static void log_start(const struct server *s) {
  const struct config *cfg = s->gen->cfg;
  for (size_t i = 0; i < cfg->listen_count; i++)
    log_info("listening on %s%s", cfg->listen[i].addr.text,
             cfg->listen[i].proxy_protocol ? " (PROXY protocol expected)" : "");
  if (s->admin) log_info("admin endpoint on http://%s/ (/metrics /healthz /status)",
                         s->admin->address);
  char tls[768];
  tls_library_description(tls, sizeof tls);
  log_info("TLS library: %s", tls);
  log_info("forwarding to %s (%s mode), %u worker(s), %zu certificate(s)",
           cfg->backend.addr.text, cfg->backend.mode == BACKEND_MODE_TCP ? "tcp" : "http",
           s->worker_count, s->gen->certs->cert_count);
}

static void init_control(struct server *s) {
  s->quiescent = xcalloc(s->worker_count, sizeof *s->quiescent);
  for (unsigned i = 0; i < s->worker_count; i++) s->quiescent[i] = &s->workers[i].reading;
  qsbr_init(&s->qsbr, s->quiescent, s->worker_count);
  uv_timer_init(s->loop, &s->ticket_timer);
  s->ticket_timer.data = s;
  uv_timer_init(s->loop, &s->churn_timer);
  s->churn_timer.data = s;
  uv_async_init(s->loop, &s->worker_exited, on_worker_exited);
  s->worker_exited.data = s;
  uv_async_init(s->loop, &s->worker_applied, on_worker_applied);
  s->worker_applied.data = s;
  uv_timer_init(s->loop, &s->shutdown_timer);
  s->shutdown_timer.data = s;
  watch_signal(s, &s->sigterm, SIGTERM);
  watch_signal(s, &s->sigint, SIGINT);
  watch_signal(s, &s->sighup, SIGHUP);
}

static void free_control(struct server *s) {
  qsbr_destroy(&s->qsbr); /* no worker runs any more */
  tickets_free(tickets_publish(NULL));
  stapling_free(&s->stapling);
  free(s->quiescent);
  free(s->workers);
  uv_loop_close(s->loop);
}

int server_run(struct generation *gen, const char *config_path) {
  struct server s;
  memset(&s, 0, sizeof s);
  s.loop = uv_default_loop();
  s.config_path = config_path;
  s.gen = gen;
  s.worker_count = config_worker_count(gen->cfg);
  atomic_init(&s.workers_exited, 0);
  signal(SIGPIPE, SIG_IGN);
  struct strlist warnings = {0};
  preflight_fd_limit(gen->cfg, s.worker_count, util_raise_fd_limit(), &warnings);
  log_strlist(LOG_WARN, "", &warnings);
  strlist_free(&warnings);

  int *fds = bind_listeners(gen->cfg, NULL, s.worker_count);
  if (!fds) {
    generation_unref(gen);
    return 1;
  }
  s.workers = xcalloc(s.worker_count, sizeof *s.workers);
  for (unsigned i = 0; i < s.worker_count; i++)
    worker_init(&s.workers[i], i, &s, gen, fds + (size_t)i * gen->cfg->listen_count);
  free(fds);
  init_control(&s);
  stapling_init(&s.stapling, s.loop, &s.qsbr);
  /* Cached staples and ticket keys are ready before the first connection is accepted. */
  stapling_attach(&s.stapling, gen);
  bool start_failed = !setup_tickets(&s, gen->cfg) || !start_admin(&s, gen->cfg, &s.admin);
  if (start_failed) {
    begin_shutdown(&s, "start-up failed");
    for (unsigned i = 0; i < s.worker_count; i++) worker_command(&s.workers[i], WORKER_STOP);
  }
  prepare_churn();
  for (unsigned i = 0; i < s.worker_count; i++) worker_start(&s.workers[i]);
  if (!start_failed) log_start(&s); /* a failed start listens nowhere: say nothing of it */
  if (!start_failed) start_churn(&s);
  log_async_start();
  uv_run(s.loop, UV_RUN_DEFAULT);

  for (unsigned i = 0; i < s.worker_count; i++) worker_join(&s.workers[i]);
  log_async_stop(log_flush_time(&s));
  free_control(&s);
  log_info("stopped");
  generation_unref(s.gen);
  return start_failed ? 1 : 0;
}
