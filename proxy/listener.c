#include "stapler/listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "stapler/conn.h"
#include "stapler/generation.h"
#include "stapler/log.h"
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
    log_warn("accept on port %u failed: %s", l->port, uv_strerror(status));
    return;
  }
  conn_accept(l->worker, l);
}

int listener_start(struct listener *l, struct worker *w, size_t index, int fd) {
  l->worker = w;
  l->index = index;
  l->port = w->gen->cfg->listen[index].addr.port;
  uv_tcp_init(&w->loop, &l->handle);
  l->handle.data = l;
  l->open = true;
  int rc = uv_tcp_open(&l->handle, fd);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&l->handle, LISTEN_BACKLOG, on_connection);
  return rc;
}

void listener_stop(struct listener *l) {
  if (!l->open) return;
  l->open = false;
  uv_close((uv_handle_t *)&l->handle, NULL);
}
