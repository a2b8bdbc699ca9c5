/* One connection to the backend: connecting, a write queue, reading, closing.
 *
 * It belongs to one owner at a time: an exchange borrows it for one request and its response
 * (from the worker's keep-alive pool, see backend_pool.h), a tunnel keeps it to the end. Events
 * go up to the owner through `backend_conn_events`; the owner decides what they mean. Bytes
 * queued for a connection belong to it and die with it: closing drops them, and nothing moves
 * a connection's queue anywhere else.
 *
 * Lifetime: created by backend_conn_connect(), freed by the close callback of its handle after
 * backend_conn_close(); once closed it calls its owner no more. */
#ifndef STAPLER_BACKEND_CONN_H
#define STAPLER_BACKEND_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "stapler/buf.h"

#define BACKEND_HIGH_WATER (256 * 1024)
#define BACKEND_LOW_WATER (64 * 1024)

struct worker;

enum backend_conn_state {
  BACKEND_CONN_CONNECTING,
  BACKEND_CONN_OPEN,   /* connected, owned by an exchange or a tunnel */
  BACKEND_CONN_IDLE,   /* in the worker's pool, between exchanges */
  BACKEND_CONN_CLOSED, /* the handle is closing; freed by its close callback */
};

struct backend_conn_events {
  void (*connected)(void *owner);
  void (*data)(void *owner, const uint8_t *data, size_t len);
  void (*eof)(void *owner); /* the backend finished sending; writing may go on */
  /* Connecting failed (`connecting`), or the connection broke: it is of no further use. */
  void (*error)(void *owner, int uv_error, bool connecting);
  void (*writable)(void *owner); /* the queue fell below BACKEND_LOW_WATER */
};

struct backend_conn {
  struct worker *worker;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t stream;
  } handle;
  uv_connect_t connect_req;
  uv_shutdown_t shutdown_req;
  enum backend_conn_state state;
  const struct backend_conn_events *events;
  void *owner;
  struct bufchain queue; /* bytes not yet handed to libuv (while connecting) */
  size_t inflight;       /* bytes in libuv write requests */
  bool reading, want_read;
  bool congested;       /* over the high-water mark: `writable` is due below the low one */
  bool shutdown_wanted; /* send FIN once the queue is out */
  bool shutdown_sent;
  bool eof;             /* the backend finished sending */
  unsigned exchanges;   /* exchanges it has carried: more than 0 means reused */
  uint64_t connect_started_at, idle_since;
  /* Pool membership (backend_pool.c): the address it is connected to and, when it carries a
   * PROXY header, the client session it belongs to. */
  struct sockaddr_storage addr;
  char *unix_path;
  const void *private_to;
  struct backend_conn *pool_prev, *pool_next;
};

/* Starts connecting to `addr` (or `unix_path`); `proxy_header` (may be NULL) is sent first.
 * NULL with `*err` (a libuv error) when no connection could even be started (no file
 * descriptor left); later failures come through the `error` event. */
struct backend_conn *backend_conn_connect(struct worker *w, const struct sockaddr *addr,
                                          const char *unix_path, const uint8_t *proxy_header,
                                          size_t proxy_header_len, const void *private_to,
                                          int *err);
/* Hands the connection to a new owner (NULL: nobody; events are then ignored). */
void backend_conn_attach(struct backend_conn *bc, const struct backend_conn_events *events,
                         void *owner);
void backend_conn_write(struct backend_conn *bc, const uint8_t *data, size_t len);
void backend_conn_write_buf(struct backend_conn *bc, struct buf *b); /* takes `b` */
bool backend_conn_congested(const struct backend_conn *bc);
void backend_conn_set_reading(struct backend_conn *bc, bool on);
/* Ends our sending (FIN) once everything queued is out; reading goes on. */
void backend_conn_shutdown(struct backend_conn *bc);
/* Closes now: queued bytes are dropped, the owner hears nothing more. */
void backend_conn_close(struct backend_conn *bc);
/* For the pool: an idle connection has no owner and only watches for the backend closing it
 * (or sending what nobody asked for, which closes it too). */
void backend_conn_set_idle(struct backend_conn *bc, bool idle);
/* The bytes queued or in flight. */
size_t backend_conn_pending(const struct backend_conn *bc);

#endif
