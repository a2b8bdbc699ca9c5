/* One exchange: a request and its response (an HTTP/1.1 request, or later one HTTP/2 stream),
 * or a tunnel (tcp mode, or what follows a 101). It takes a backend connection from the
 * worker's pool (or opens one), writes the request to it as HTTP/1.1, reads the response with
 * its own parser, and tells its owner, the client session's codec, what happened through
 * `exchange_events`. It also keeps the exchange's access-log record.
 *
 * What the exchange decides, because only it sees the backend connection:
 * - a backend that closes or resets before answering a request sent on a reused keep-alive
 *   connection gets the request again on a new connection, once, when the request is
 *   idempotent and every byte of it so far is still at hand (nginx's proxy_next_upstream);
 *   otherwise the codec hears `failed` with 502;
 * - a backend that closes while the request is still arriving abandons the request: the rest
 *   of it is dropped, never written to another connection;
 * - a backend connection goes back to the pool only when the response and the request both
 *   ended cleanly on it, with nothing unasked-for after the response.
 *
 * Ownership: the codec creates and frees exchanges (exchange_free, also from inside an event:
 * the free then waits until the event returns). The request head belongs to the codec and must
 * outlive the exchange. The backend connection is the exchange's while it holds it. */
#ifndef STAPLER_EXCHANGE_H
#define STAPLER_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stapler/buf.h"
#include "stapler/http1.h"
#include "stapler/http_head.h"

struct session;
struct backend_conn;
struct exchange;

struct exchange_events {
  /* A response head: interim (1xx), final, or a 101 after which the exchange is a tunnel. */
  void (*response_head)(void *owner, struct exchange *e, const struct http_head *res);
  /* Response body bytes (or, in a tunnel, whatever the backend sends). */
  void (*response_data)(void *owner, struct exchange *e, const uint8_t *data, size_t len);
  /* The response is complete: trailer fields are `trailers` from index `from` on (NULL: none).
   * In a tunnel: the backend finished sending. */
  void (*response_end)(void *owner, struct exchange *e, const struct http_head *trailers,
                       size_t from);
  /* No (more) response will come. `status` is what to answer when nothing of a response went
   * to the client yet (502, 504); the codec ends the connection otherwise. */
  void (*failed)(void *owner, struct exchange *e, int status, const char *why);
  /* The backend took what was queued: request bytes the codec held back may go now. */
  void (*writable)(void *owner, struct exchange *e);
};

enum exchange_state {
  EXCHANGE_FORWARDING, /* the request goes to the backend, its response comes back */
  EXCHANGE_TUNNEL,     /* bytes pass both ways as they are */
  EXCHANGE_ENDED,      /* the response is complete or failed; no backend connection left */
};

/* How far the request got, as the exchange sees it. */
enum exchange_request {
  EXCHANGE_REQUEST_SENDING,   /* more of it may come from the client */
  EXCHANGE_REQUEST_COMPLETE,  /* the client sent all of it */
  EXCHANGE_REQUEST_ABANDONED, /* the backend went away first: the rest is dropped */
};

enum exchange_response {
  EXCHANGE_RESPONSE_WAITING,  /* no final head yet (interim ones may have passed) */
  EXCHANGE_RESPONSE_BODY,     /* the final head went up; body follows */
  EXCHANGE_RESPONSE_COMPLETE,
  EXCHANGE_RESPONSE_FAILED,
};

/* What the access log says of the exchange. */
struct exchange_record {
  uint64_t started_at;          /* loop time of its first byte */
  uint64_t bytes_in, bytes_out; /* client bytes each way, counted by the codec */
  int status;                   /* the response status, or stapler's own */
  bool forwarded;               /* the request went to the backend */
  bool logged;
};

struct exchange {
  struct session *session;
  const struct exchange_events *events;
  void *owner;
  enum exchange_state state;
  enum exchange_request request;
  enum exchange_response response;
  const struct http_head *req; /* borrowed from the owner */
  int backend_minor;           /* HTTP/1.x minor version spoken to the backend */
  struct backend_conn *bc;
  struct http1_reader reader; /* the backend's response */
  bool retried;
  bool replay_ok;             /* `replay` holds every request byte sent so far */
  struct bufchain replay;     /* request bytes sent on a reused connection, for a retry */
  bool response_paused;       /* the codec cannot take response bytes now */
  bool backend_reusable;      /* decided when the response ends */
  bool backend_sent_anything; /* on the current connection */
  uint64_t activity_at;       /* last byte either way, for the response timeout */
  struct exchange_record record;
  int busy;    /* inside a backend event: freeing waits */
  bool doomed; /* exchange_free was called while busy */
};

struct exchange *exchange_new(struct session *s, const struct exchange_events *events,
                              void *owner);
/* Starts forwarding `req` (borrowed), written to the backend as HTTP/1.`minor`. Events may
 * come before it returns (a failure to even open a connection). */
void exchange_start(struct exchange *e, const struct http_head *req, int minor);
/* tcp mode: a tunnel from the start. */
void exchange_start_tunnel(struct exchange *e);

/* Request body bytes (or tunnel bytes from the client). */
void exchange_request_data(struct exchange *e, const uint8_t *data, size_t len);
/* The request ended; chunked trailer fields are `trailers` from `from` on (NULL: none). In a
 * tunnel: the client finished sending. */
void exchange_request_end(struct exchange *e, const struct http_head *trailers, size_t from);
/* The codec should hold request bytes back until `writable`. */
bool exchange_congested(const struct exchange *e);
/* Stops or resumes reading the response (client-side backpressure). */
void exchange_pause_response(struct exchange *e, bool paused);

/* The next moment the exchange must be looked at (UINT64_MAX: none), and the look. */
uint64_t exchange_deadline(const struct exchange *e);
void exchange_expire(struct exchange *e, uint64_t now);

/* Releases the backend connection (to the pool when it is clean) and frees the exchange. */
void exchange_free(struct exchange *e);

/* Both halves are over: nothing more will happen. */
bool exchange_done(const struct exchange *e);

#endif
