/* A client session: one accepted connection, its TLS, and the codec that speaks the protocol
 * chosen by ALPN and mode (HTTP/1.1 today; a raw tunnel in tcp mode).
 *
 *   listener -> session (socket, PROXY header, TLS, timer) -> codec -> exchange(s) -> backend
 *
 * Events travel down that chain as calls and come back up as the codec's and the exchanges'
 * callbacks; the session never looks at HTTP. Decrypted client bytes go to the codec, which
 * takes what it can; when it takes less, the session stops reading the socket until the codec
 * calls session_resume(). Bytes the codec sends are encrypted into the session's output, and
 * while that output is above SESSION_HIGH_WATER the codec holds the backend back.
 *
 * Lifetime: the worker owns every session from accept until the close callback of its last
 * handle (the socket, the timer) frees it, its codec, and through the codec its exchanges. */
#ifndef STAPLER_SESSION_H
#define STAPLER_SESSION_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "stapler/buf.h"
#include "stapler/tls.h"

#define SESSION_HIGH_WATER (256 * 1024)
#define SESSION_LOW_WATER (64 * 1024)

struct worker;
struct listener;
struct generation;
struct codec;

enum session_state {
  SESSION_PROXY_HEADER, /* reading a load balancer's PROXY header (listen[].proxy_protocol) */
  SESSION_HANDSHAKE,
  SESSION_OPEN,         /* the codec runs */
  SESSION_FINISHING,    /* close_notify queued: closed once the client has every byte */
  SESSION_CLOSED,       /* handles closing; freed by the last close callback */
};

struct session {
  struct worker *worker;
  struct generation *gen; /* reference held for the session's whole life */
  struct session *prev, *next; /* the worker's list */
  uv_tcp_t client;
  uv_timer_t timer;
  uv_shutdown_t shutdown_req;
  int open_handles;
  enum session_state state;
  struct tls_session tls;
  struct codec *codec;
  struct buf *plain;       /* decrypted client bytes the codec has not taken yet */
  struct buf *stage;       /* plaintext to send, not yet encrypted (see session_send) */
  struct session *flush_prev, *flush_next; /* the worker's flush queue */
  bool flush_queued;
  bool congested;          /* the codec was told the client is slow: tell it when not */
  struct buf *proxy_header; /* bytes of a PROXY header being read */
  size_t inflight;         /* ciphertext in libuv writes */
  bool reading;
  bool socket_eof;      /* the client's FIN arrived */
  bool client_eof;      /* the codec was told the client finished sending */
  bool write_shut;      /* close_notify sent while the client may still send (tunnels) */
  bool fin_sent;        /* our TCP FIN is on its way */
  bool linger_allowed;  /* finishing an open session: linger before closing (see session.c) */
  bool lingering;       /* everything is sent; reading and dropping until the client closes */
  bool pumping, repump; /* re-entry guard for the input pump */
  bool draining;        /* the worker is stopping */
  uint64_t accepted_at, opened_at, last_activity, linger_started, timer_due;
  /* The client as the backend should see it: the socket's peer, or what a PROXY header said,
   * and the address and port it connected to (the balancer's, with PROXY). */
  struct sockaddr_storage client_addr, local_addr;
  char client_ip[INET6_ADDRSTRLEN];
  uint16_t client_port, local_port;
  /* The X-Forwarded-* lines for every request of this session. */
  char forwarding[192];
  size_t forwarding_len;
};

/* A connection `l` accepted: `fd` belongs to the session (or is closed at once when the
 * worker is draining or limits.max_connections is reached). */
void session_accept(struct worker *w, struct listener *l, int fd);
/* A reload made a new generation current (see codec.h). */
void session_generation_changed(struct session *s);
/* The worker is stopping: close what has not started, let the codec finish the rest. */
void session_drain(struct session *s);
/* Sends the output of every session that asked for it (the worker, once per loop phase). */
void session_flush_queued(struct worker *w);

/* ---- for codecs ----------------------------------------------------------------------------*/

/* Queues `len` bytes for the client. Small pieces are gathered into one TLS record; big
 * ones are encrypted at once. */
void session_send(struct session *s, const uint8_t *data, size_t len);
/* Asks for what is queued to be sent. It goes out once the worker has run every callback of
 * this loop pass, so that a response head and body, or many HTTP/2 frames, leave in one
 * record and one write; at once when a lot is queued. */
void session_flush(struct session *s);
/* The client is slow: output above SESSION_HIGH_WATER. The codec hears client_writable once
 * it is below SESSION_LOW_WATER again. */
bool session_congested(struct session *s);
/* The codec can take input again: run the pump. Safe from inside the codec's own calls. */
void session_resume(struct session *s);
/* Ends our sending (close_notify, then FIN) while still reading the client (tunnels). */
void session_shutdown_write(struct session *s);
/* Ends the session after what is queued went out (close_notify sent). */
void session_finish(struct session *s, const char *why);
/* Ends the session now, dropping what is queued. */
void session_close(struct session *s, const char *why);
/* Counts activity for the idle timeout; re-arms the timer after a deadline moved closer. */
void session_touch(struct session *s);
void session_arm_timer(struct session *s);

/* "client=IP:PORT"-style address for log lines. */
void session_client_address(const struct session *s, char *out, size_t cap);
const char *session_sni(const struct session *s);
/* Builds the PROXY header backend.proxy_protocol asks for; false when off or impossible. */
bool session_backend_proxy_header(const struct session *s, uint8_t *out, size_t cap,
                                  size_t *len);

#endif
