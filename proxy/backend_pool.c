/* The worker's keep-alive backend connections, handed to one exchange at a time
 * (backend_pool.h). */
#include "stapler/backend_pool.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "stapler/backend_conn.h"
#include "stapler/worker.h"

#define SWEEP_MS 1000

static void unlink_conn(struct backend_pool *p, struct backend_conn *bc) {
  if (bc->pool_prev)
    bc->pool_prev->pool_next = bc->pool_next;
  else
    p->head = bc->pool_next;
  if (bc->pool_next) bc->pool_next->pool_prev = bc->pool_prev;
  bc->pool_prev = bc->pool_next = NULL;
  p->idle_count--;
}

static void on_sweep(uv_timer_t *t) {
  struct backend_pool *p = t->data;
  uint64_t now = uv_now(t->loop);
  for (struct backend_conn *bc = p->head, *next; bc; bc = next) {
    next = bc->pool_next;
    if (now - bc->idle_since >= p->keepalive_ms) backend_conn_close(bc); /* removes it */
  }
  if (!p->head) uv_timer_stop(&p->sweep);
}

void backend_pool_init(struct backend_pool *p, struct worker *w) {
  memset(p, 0, sizeof *p);
  p->worker = w;
  uv_timer_init(&w->loop, &p->sweep);
  uv_unref((uv_handle_t *)&p->sweep); /* idle connections do not keep a stopping worker up */
  p->sweep.data = p;
}

void backend_pool_set_keepalive(struct backend_pool *p, uint64_t keepalive_ms) {
  p->keepalive_ms = keepalive_ms;
}

void backend_pool_close(struct backend_pool *p) {
  while (p->head) backend_conn_close(p->head);
  if (!uv_is_closing((uv_handle_t *)&p->sweep)) uv_close((uv_handle_t *)&p->sweep, NULL);
}

static bool same_address(const struct backend_conn *bc, const struct sockaddr *addr,
                         const char *unix_path) {
  if (unix_path || bc->unix_path)
    return unix_path && bc->unix_path && !strcmp(unix_path, bc->unix_path);
  if (bc->addr.ss_family != addr->sa_family) return false;
  size_t len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in);
  return memcmp(&bc->addr, addr, len) == 0;
}

/* Whether the socket is quiet: no bytes and no FIN waiting. An idle connection is read, so
 * bytes the backend sent after its last response (a second response, a body after a 204) and
 * its close are seen by the loop and close it; what this catches is the close the loop has
 * not handled yet. That happens when a backend ends connections it kept idle for a while (its
 * keep-alive timeout, a restart), so only connections idle for PEEK_AFTER_MS are probed: one
 * syscall per request otherwise, and a close that arrives after the probe is met by the retry
 * of idempotent requests anyway (exchange.c). */
#define PEEK_AFTER_MS 200
static bool quiet(struct backend_conn *bc) {
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&bc->handle, &fd) != 0) return false;
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

struct backend_conn *backend_pool_take(struct backend_pool *p, const struct sockaddr *addr,
                                       const char *unix_path, const void *private_to) {
  uint64_t now = uv_now(&p->worker->loop);
  for (struct backend_conn *bc = p->head, *next; bc; bc = next) {
    next = bc->pool_next;
    if (bc->private_to != private_to || !same_address(bc, addr, unix_path)) continue;
    if (now - bc->idle_since >= p->keepalive_ms) continue; /* the sweep closes it */
    if (now - bc->idle_since >= PEEK_AFTER_MS && !quiet(bc)) {
      backend_conn_close(bc); /* removes it from the pool */
      continue;
    }
    unlink_conn(p, bc);
    backend_conn_set_idle(bc, false);
    return bc;
  }
  return NULL;
}

void backend_pool_put(struct backend_pool *p, struct backend_conn *bc) {
  if (!p->keepalive_ms || uv_is_closing((uv_handle_t *)&p->sweep) ||
      bc->state != BACKEND_CONN_OPEN || bc->eof || bc->shutdown_wanted ||
      backend_conn_pending(bc) > 0) {
    backend_conn_close(bc);
    return;
  }
  if (p->idle_count >= BACKEND_POOL_MAX_IDLE) {
    struct backend_conn *oldest = p->head;
    while (oldest->pool_next) oldest = oldest->pool_next;
    backend_conn_close(oldest);
  }
  backend_conn_set_idle(bc, true);
  bc->idle_since = uv_now(&p->worker->loop);
  bc->pool_prev = NULL;
  bc->pool_next = p->head;
  if (p->head) p->head->pool_prev = bc;
  p->head = bc;
  p->idle_count++;
  if (!uv_is_active((uv_handle_t *)&p->sweep))
    uv_timer_start(&p->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
}

void backend_pool_remove(struct backend_pool *p, struct backend_conn *bc) { unlink_conn(p, bc); }

void backend_pool_close_private(struct backend_pool *p, const void *owner) {
  for (struct backend_conn *bc = p->head, *next; bc; bc = next) {
    next = bc->pool_next;
    if (bc->private_to == owner) backend_conn_close(bc);
  }
}
