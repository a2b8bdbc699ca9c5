#include "stapler/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include "stapler/log.h"
#include "stapler/session.h"
#include "stapler/util.h"
#include "stapler/worker.h"

#define LISTEN_BACKLOG 4096

static int new_socket(const struct config_listen *cfg, bool reuse_port, char *err,
                      size_t errlen) {
  const struct sockaddr *sa = (const struct sockaddr *)&cfg->addr.ss;
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -1;
  }
  /* IPV6_V6ONLY: [::]:443 and 0.0.0.0:443 can be listed side by side. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      (sa->sa_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)) {
    snprintf(err, errlen, "setsockopt: %s", strerror(errno));
    close(fd);
    return -1;
  }
  if (bind(fd, sa, cfg->addr.ss_len) < 0) {
    snprintf(err, errlen, "%s", strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

bool listener_probe(const struct config_listen *cfg, char *err, size_t errlen) {
  if (cfg->reuse_port) return true;
  /* Without SO_REUSEPORT this bind fails when anything listens there already, SO_REUSEPORT
   * or not: a second stapler started by mistake would otherwise share the port silently and
   * take half the connections with its own certificates. */
  int fd = new_socket(cfg, false, err, errlen);
  if (fd < 0) {
    if (strstr(err, strerror(EADDRINUSE)))
      snprintf(err, errlen, "address already in use by another process (a second stapler?); "
                            "set listen[].reuse_port: true to share it on purpose");
    return false;
  }
  close(fd);
  return true;
}

int listener_bind(const struct config_listen *cfg, char *err, size_t errlen) {
  /* SO_REUSEPORT: each worker binds its own socket and the kernel spreads connections. */
  int fd = new_socket(cfg, true, err, errlen);
  if (fd >= 0 && listen(fd, LISTEN_BACKLOG) < 0) {
    snprintf(err, errlen, "%s", strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static void on_accept(struct acceptor *a, int fd) {
  struct listener *l = a->data;
  session_accept(l->worker, l, fd);
}

static void on_pause(struct acceptor *a, int err) {
  struct listener *l = a->data;
  struct worker *w = l->worker;
  stat_add(&w->stats, STAT_ACCEPT_PAUSES, 1);
  log_warn("worker %u: accept on %s failed: %s (%zu connection(s) open in this worker, "
           "open-file limit %llu): accepting again in %d ms",
           w->id, l->address, uv_strerror(err), w->session_count,
           (unsigned long long)util_fd_limit(), ACCEPTOR_PAUSE_MS);
}

struct listener *listener_start(struct worker *w, const struct config_listen *cfg, int fd) {
  struct listener *l = xcalloc(1, sizeof *l);
  l->worker = w;
  l->address = xstrdup(cfg->addr.text);
  l->acceptor.data = l;
  listener_update(l, cfg);
  int rc = acceptor_start(&l->acceptor, &w->loop, fd, on_accept, on_pause);
  if (rc) {
    log_error("worker %u: cannot listen on %s: %s", w->id, cfg->addr.text, uv_strerror(rc));
    listener_stop(l);
    return NULL;
  }
  return l;
}

void listener_update(struct listener *l, const struct config_listen *cfg) {
  l->port = cfg->addr.port;
  l->proxy_protocol = cfg->proxy_protocol;
}

static void on_closed(struct acceptor *a) {
  struct listener *l = a->data;
  free(l->address);
  free(l);
}

void listener_stop(struct listener *l) {
  if (!l) return;
  if (l->acceptor.open_handles == 0) {
    on_closed(&l->acceptor);
    return;
  }
  acceptor_close(&l->acceptor, on_closed);
}
