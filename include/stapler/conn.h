/* One proxied connection: the client's TLS socket, the backend socket, one timer.
 *
 * Data flows one way per direction: client ciphertext -> TLS -> (http1 | tunnel) -> backend,
 * and backend bytes -> (http1 | tunnel) -> TLS -> client. Each direction stops reading its
 * source while the other side's unsent bytes exceed CONN_HIGH_WATER and resumes below
 * CONN_LOW_WATER, so a connection never holds more than a few buffers whatever the peers do.
 *
 * Ownership: the worker owns the conn from accept until the last of its libuv handles has
 * closed (conn.c frees it then). The conn holds a reference to its generation, its buffers and
 * its http1 state. The code is split by concern: conn.c (lifecycle, timers), conn_client.c
 * (client socket and TLS), conn_backend.c (backend socket), conn_http.c (HTTP mode),
 * conn_write.c (write requests). The functions below are shared among those files only. */
#ifndef STAPLER_CONN_H
#define STAPLER_CONN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "stapler/buf.h"
#include "stapler/http1.h"
#include "stapler/tls.h"

#define CONN_HIGH_WATER (256 * 1024)
#define CONN_LOW_WATER (64 * 1024)

struct worker;
struct listener;
struct generation;

/* PROXY_HEADER: waiting for a load balancer's PROXY header (listen[].proxy_protocol). */
enum conn_phase { CONN_PROXY_HEADER, CONN_HANDSHAKE, CONN_OPEN, CONN_CLOSING };
enum backend_state { BACKEND_NONE, BACKEND_CONNECTING, BACKEND_UP, BACKEND_CLOSING };

struct conn {
  struct worker *worker;
  struct generation *gen; /* reference held for the connection's whole life */
  struct conn *prev, *next; /* the worker's list */

  uv_tcp_t client;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } backend;
  uv_connect_t connect_req;
  uv_shutdown_t shutdown_req;
  uv_timer_t timer;
  int open_handles; /* freed when the last one has closed */

  enum conn_phase phase;
  enum backend_state backend_state;
  struct tls_session tls;
  struct http1 *http;  /* HTTP mode, once the handshake is done */
  bool tunnel;         /* raw bytes both ways: tcp mode, or HTTP after a 101 */
  struct buf *plain;   /* decrypted client bytes not consumed yet */
  struct bufchain to_backend;  /* bytes for the backend not yet handed to libuv */
  size_t backend_inflight;     /* bytes in libuv writes to the backend */
  size_t client_inflight;      /* bytes in libuv writes to the client */

  bool client_reading, backend_reading;
  bool client_eof;        /* the client finished sending */
  bool backend_shutdown;  /* we finished sending to the backend (tunnels) */
  bool finishing;         /* close_notify queued: close once the client side is flushed */
  bool draining;          /* the worker is stopping: end after the current exchange */

  uint64_t accepted_at, last_activity, header_started_at, connect_started_at;
  /* The exchange in progress (an HTTP request and its response, or the whole tunnel), for
   * the access log: decrypted bytes each way and when it began. */
  uint64_t exchange_started_at, exchange_bytes_in, exchange_bytes_out;
  bool exchange_logged; /* the exchange in flight already has its access log line */
  uint64_t timer_due; /* when the armed timer fires, 0 if unarmed */

  /* The client as the backend should see it: the socket's peer, or what a PROXY header
   * said. `local_addr` is the address it connected to. */
  struct sockaddr_storage client_addr, local_addr;
  char client_ip[INET6_ADDRSTRLEN];
  uint16_t client_port;
  uint16_t local_port;
  struct buf *proxy_header; /* bytes of a PROXY header being read */
};

static inline bool conn_before_tls(const struct conn *c) {
  return c->phase == CONN_PROXY_HEADER || c->phase == CONN_HANDSHAKE;
}

/* conn.c */
void conn_accept(struct worker *w, struct listener *l);
void conn_close(struct conn *c, const char *why);  /* now, without further writes */
void conn_finish(struct conn *c, const char *why); /* after flushing, with close_notify */
void conn_touch(struct conn *c);
void conn_arm_timer(struct conn *c);
void conn_drain(struct conn *c);
void conn_handle_closed(uv_handle_t *h);

/* conn_proxy_header.c */
void proxy_header_received(struct conn *c, struct buf *b);
bool backend_proxy_header(struct conn *c, uint8_t *out, size_t cap, size_t *len);

/* conn_client.c */
void client_start(struct conn *c);
void client_set_address(struct conn *c, const struct sockaddr *sa);
void client_pump(struct conn *c);
void client_flush(struct conn *c);
void client_update_reading(struct conn *c);
bool client_congested(const struct conn *c);
void client_send(struct conn *c, const uint8_t *data, size_t len);

/* conn_backend.c */
void backend_connect(struct conn *c);
void backend_send(struct conn *c, const uint8_t *data, size_t len);
void backend_send_buf(struct conn *c, struct buf *b);
void backend_flush(struct conn *c);
void backend_close(struct conn *c);
bool backend_congested(const struct conn *c);
void backend_update_reading(struct conn *c);

/* conn_http.c */
void http_start(struct conn *c);
void http_client_data(struct conn *c);
void http_backend_data(struct conn *c, const uint8_t *data, size_t len);
void http_backend_eof(struct conn *c);
void http_fail(struct conn *c, int status, const char *why);
void http_react(struct conn *c);
/* Logs the exchange a closing connection cut short, then frees the HTTP state. */
void http_free(struct conn *c);

/* conn_write.c */
typedef void (*conn_write_done)(struct conn *c, size_t bytes, int status);
/* Sends `chain` (taking it): what the socket accepts at once is written directly; the rest
 * goes out in write requests whose completion calls `done`. Returns the bytes written at
 * once, for which `done` is not called. */
size_t conn_write(struct conn *c, uv_stream_t *stream, struct buf *chain,
                  conn_write_done done);
void conn_write_reqs_free(struct worker *w);

#endif
