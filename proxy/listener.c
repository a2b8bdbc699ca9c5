#include "stapler/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <unistd.h>

#include "stapler/session.h"
#include "stapler/log.h"
#include "stapler/util.h"
#include "stapler/worker.h"

#define LISTEN_BACKLOG 4096

int listener_bind(const struct config_listen *cfg, char *err, size_t errlen) {
  const struct sockaddr *sa = (const struct sockaddr *)&cfg->addr.ss;
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -1;
  }
  /* SO_REUSEPORT: each worker binds its own socket and the kernel spreads connections.
   * IPV6_V6ONLY: [::]:443 and 0.0.0.0:443 can be listed side by side. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
      (sa->sa_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)) {
    snprintf(err, errlen, "setsockopt: %s", strerror(errno));
    close(fd);
    return -1;
  }
  if (bind(fd, sa, cfg->addr.ss_len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
    snprintf(err, errlen, "%s", strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static void on_connection(uv_stream_t *server, int status) {
  struct listener *l = server->data;
  if (status < 0) {
    log_warn("accept on %s failed: %s", l->address, uv_strerror(status));
    return;
  }
  session_accept(l->worker, l);
}

struct listener *listener_start(struct worker *w, const struct config_listen *cfg, int fd) {
  struct listener *l = xcalloc(1, sizeof *l);
  l->worker = w;
  l->address = xstrdup(cfg->addr.text);
  listener_update(l, cfg);
  uv_tcp_init(&w->loop, &l->handle);
  l->handle.data = l;
  int rc = uv_tcp_open(&l->handle, fd);
  if (rc)
    close(fd); /* not adopted by the handle */
  else
    rc = uv_listen((uv_stream_t *)&l->handle, LISTEN_BACKLOG, on_connection);
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

static void on_closed(uv_handle_t *h) {
  struct listener *l = h->data;
  free(l->address);
  free(l);
}

void listener_stop(struct listener *l) {
  if (l) uv_close((uv_handle_t *)&l->handle, on_closed);
}
