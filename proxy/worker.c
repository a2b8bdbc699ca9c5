#include "stapler/worker.h"

#include <arpa/inet.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stapler/session.h"
#include "stapler/sockwrite.h"
#include "stapler/generation.h"
#include "stapler/listener.h"
#include "stapler/log.h"
#include "stapler/qsbr.h"
#include "stapler/server.h"
#include "stapler/util.h"

/* Buffers kept for reuse per worker (32 KiB each): at most POOL_MAX_FREE, and those left
 * unused for a whole POOL_TRIM_MS go back to the allocator, all but POOL_KEEP. A peak of
 * traffic then costs memory only while it lasts. */
#define POOL_MAX_FREE 512
#define POOL_KEEP 16
#define POOL_TRIM_MS 10000
/* Freeing this many buffers at once is worth asking malloc to give the pages back. */
#define POOL_TRIM_RELEASE 32

static void finish_if_done(struct worker *w) {
  if (!w->draining || w->session_count > 0 || uv_is_closing((uv_handle_t *)&w->wakeup)) return;
  /* The last handles: uv_run returns once they are closed. */
  backend_pool_close(&w->backend_pool);
  uv_close((uv_handle_t *)&w->flush_before_poll, NULL);
  uv_close((uv_handle_t *)&w->flush_after_poll, NULL);
  uv_close((uv_handle_t *)&w->pool_trim, NULL);
  uv_close((uv_handle_t *)&w->wakeup, NULL);
}

static void stop_listening(struct worker *w) {
  for (size_t i = 0; i < w->listener_count; i++) listener_stop(w->listeners[i]);
  free(w->listeners);
  w->listeners = NULL;
  w->listener_count = 0;
}

static void drain(struct worker *w) {
  w->draining = true;
  stop_listening(w);
  for (struct session *s = w->sessions, *next; s; s = next) {
    next = s->next;
    session_drain(s);
  }
  finish_if_done(w);
}

static void stop_now(struct worker *w) {
  w->draining = true;
  stop_listening(w);
  for (struct session *s = w->sessions, *next; s; s = next) {
    next = s->next;
    session_close(s, "shutdown timeout");
  }
  finish_if_done(w);
}

static void reset_backend_addr(struct worker *w) {
  memcpy(&w->backend_addr, &w->gen->cfg->backend.addr.ss, sizeof w->backend_addr);
  w->backend_resolved_at = 0;
  backend_pool_set_keepalive(&w->backend_pool, w->gen->cfg->backend.keepalive_ms);
}

/* Takes the listener for `address` out of the current set, or NULL. */
static struct listener *take_listener(struct worker *w, const char *address) {
  for (size_t i = 0; i < w->listener_count; i++) {
    struct listener *l = w->listeners[i];
    if (l && !strcmp(l->address, address)) {
      w->listeners[i] = NULL;
      return l;
    }
  }
  return NULL;
}

/* Serve a new generation: new connections use it, open ones keep theirs. */
static void apply_update(struct worker *w) {
  pthread_mutex_lock(&w->mailbox_lock);
  struct worker_update *u = w->mailbox;
  w->mailbox = NULL;
  pthread_mutex_unlock(&w->mailbox_lock);
  if (!u) return;
  const struct config *cfg = u->gen->cfg;
  struct listener **next = xcalloc(cfg->listen_count ? cfg->listen_count : 1, sizeof *next);
  for (size_t i = 0; i < cfg->listen_count; i++) {
    const struct config_listen *lc = &cfg->listen[i];
    if (u->fds[i] >= 0) {
      next[i] = w->draining ? (close(u->fds[i]), NULL) : listener_start(w, lc, u->fds[i]);
    } else if ((next[i] = take_listener(w, lc->addr.text))) {
      listener_update(next[i], lc);
    }
  }
  stop_listening(w); /* what is left: addresses the new config dropped */
  w->listeners = next;
  w->listener_count = cfg->listen_count;
  generation_unref(w->gen);
  w->gen = u->gen;
  reset_backend_addr(w);
  for (struct session *s = w->sessions; s; s = s->next) session_generation_changed(s);
  free(u->fds);
  free(u);
  atomic_fetch_add(&w->updates_applied, 1);
  uv_async_send(&w->server->worker_applied);
}

/* Releases an update that was never applied, closing its sockets. */
static void discard_update(struct worker_update *u) {
  for (size_t i = 0; i < u->gen->cfg->listen_count; i++)
    if (u->fds[i] >= 0) close(u->fds[i]);
  generation_unref(u->gen);
  free(u->fds);
  free(u);
}

static bool backend_is_name(const struct config_addr *a) {
  struct in6_addr ignored;
  return a->host && inet_pton(AF_INET, a->host, &ignored) != 1 &&
         inet_pton(AF_INET6, a->host, &ignored) != 1;
}

const struct sockaddr *worker_backend_addr(struct worker *w) {
  return (const struct sockaddr *)&w->backend_addr;
}

struct backend_lookup {
  uv_getaddrinfo_t req;
  struct worker *worker;
  struct generation *gen; /* the lookup is for this generation's backend */
};

static void on_backend_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  struct backend_lookup *l = req->data;
  struct worker *w = l->worker;
  w->backend_resolving = false;
  if (status == 0 && res && l->gen == w->gen &&
      memcmp(&w->backend_addr, res->ai_addr, res->ai_addrlen) != 0) {
    memcpy(&w->backend_addr, res->ai_addr, res->ai_addrlen);
    char ip[INET6_ADDRSTRLEN] = "?";
    if (res->ai_family == AF_INET)
      uv_ip4_name((const struct sockaddr_in *)res->ai_addr, ip, sizeof ip);
    else
      uv_ip6_name((const struct sockaddr_in6 *)res->ai_addr, ip, sizeof ip);
    log_info("worker %u: backend %s now resolves to %s", w->id, l->gen->cfg->backend.addr.host,
             ip);
  }
  uv_freeaddrinfo(res);
  generation_unref(l->gen);
  free(l);
}

void worker_backend_failed(struct worker *w) {
  const struct config_addr *a = &w->gen->cfg->backend.addr;
  uint64_t now = uv_now(&w->loop);
  if (!backend_is_name(a) || w->backend_resolving || now - w->backend_resolved_at < 1000) return;
  struct backend_lookup *l = xmalloc(sizeof *l);
  l->worker = w;
  l->gen = generation_ref(w->gen);
  l->req.data = l;
  char port[8];
  snprintf(port, sizeof port, "%u", a->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  if (uv_getaddrinfo(&w->loop, &l->req, on_backend_resolved, a->host, port, &hints) != 0) {
    generation_unref(l->gen);
    free(l);
    return;
  }
  w->backend_resolving = true;
  w->backend_resolved_at = now;
}

static void on_wakeup(uv_async_t *a) {
  struct worker *w = a->data;
  unsigned cmds = atomic_exchange(&w->commands, 0);
  if (cmds & WORKER_UPDATE) apply_update(w);
  if (cmds & WORKER_STOP)
    stop_now(w);
  else if (cmds & WORKER_DRAIN)
    drain(w);
}

static void trim_pool(uv_timer_t *t) {
  struct worker *w = t->data;
  if (bufpool_trim(&w->pool, POOL_KEEP) >= POOL_TRIM_RELEASE) {
#ifdef __GLIBC__
    /* Freed 32 KiB blocks sit between live ones; without this the pages stay resident. */
    malloc_trim(0);
#endif
  }
}

static void flush_before_poll(uv_prepare_t *h) { session_flush_queued(h->data); }
static void flush_after_poll(uv_check_t *h) { session_flush_queued(h->data); }

void worker_init(struct worker *w, unsigned id, struct server *server, struct generation *gen,
                 const int *fds) {
  memset(w, 0, sizeof *w);
  w->id = id;
  w->server = server;
  atomic_init(&w->commands, 0);
  atomic_init(&w->updates_applied, 0);
  pthread_mutex_init(&w->mailbox_lock, NULL);
  uv_loop_init(&w->loop);
  bufpool_init(&w->pool, POOL_MAX_FREE);
  backend_pool_init(&w->backend_pool, w);
  atomic_init(&w->open_sessions, 0);
  w->gen = generation_ref(gen);
  reset_backend_addr(w);
  uv_async_init(&w->loop, &w->wakeup, on_wakeup);
  w->wakeup.data = w;
  uv_prepare_init(&w->loop, &w->flush_before_poll);
  uv_check_init(&w->loop, &w->flush_after_poll);
  w->flush_before_poll.data = w->flush_after_poll.data = w;
  uv_prepare_start(&w->flush_before_poll, flush_before_poll);
  uv_check_start(&w->flush_after_poll, flush_after_poll);
  uv_timer_init(&w->loop, &w->pool_trim);
  w->pool_trim.data = w;
  uv_timer_start(&w->pool_trim, trim_pool, POOL_TRIM_MS, POOL_TRIM_MS);
  /* They keep nothing alive: a drained worker ends when its sessions do. */
  uv_unref((uv_handle_t *)&w->flush_before_poll);
  uv_unref((uv_handle_t *)&w->flush_after_poll);
  uv_unref((uv_handle_t *)&w->pool_trim);
  atomic_init(&w->reading, 0);
  const struct config *cfg = gen->cfg;
  w->listener_count = cfg->listen_count;
  w->listeners = xcalloc(cfg->listen_count, sizeof *w->listeners);
  for (size_t i = 0; i < cfg->listen_count; i++)
    w->listeners[i] = listener_start(w, &cfg->listen[i], fds[i]);
}

static void run(void *arg) {
  struct worker *w = arg;
  qsbr_register_reader(&w->reading);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  atomic_fetch_add(&w->server->workers_exited, 1);
  uv_async_send(&w->server->worker_exited);
}

int worker_start(struct worker *w) { return uv_thread_create(&w->thread, run, w); }

void worker_command(struct worker *w, enum worker_command cmd) {
  atomic_fetch_or(&w->commands, (unsigned)cmd);
  uv_async_send(&w->wakeup);
}

void worker_update(struct worker *w, struct worker_update *u) {
  pthread_mutex_lock(&w->mailbox_lock);
  struct worker_update *old = w->mailbox; /* reloads wait for every worker: not expected */
  w->mailbox = u;
  pthread_mutex_unlock(&w->mailbox_lock);
  if (old) discard_update(old);
  worker_command(w, WORKER_UPDATE);
}

void worker_session_opened(struct worker *w) {
  w->session_count++;
  atomic_store_explicit(&w->open_sessions, w->session_count, memory_order_relaxed);
}

void worker_session_closed(struct worker *w) {
  w->session_count--;
  atomic_store_explicit(&w->open_sessions, w->session_count, memory_order_relaxed);
  finish_if_done(w);
}

size_t worker_open_total(const struct worker *w) { return server_open_connections(w->server); }

void worker_join(struct worker *w) {
  uv_thread_join(&w->thread);
  uv_run(&w->loop, UV_RUN_NOWAIT); /* run close callbacks still pending */
  if (uv_loop_close(&w->loop) != 0) log_warn("worker %u: handles left open at exit", w->id);
  sockwrite_free_reqs(w);
  bufpool_destroy(&w->pool);
  generation_unref(w->gen);
  free(w->listeners);
  pthread_mutex_lock(&w->mailbox_lock);
  if (w->mailbox) discard_update(w->mailbox);
  w->mailbox = NULL;
  pthread_mutex_unlock(&w->mailbox_lock);
  pthread_mutex_destroy(&w->mailbox_lock);
}
