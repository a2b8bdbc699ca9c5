/* Counters kept per worker and summed when read. Each counter has one writer (its worker), so
 * an increment is a relaxed load and store: no lock prefix on the hot path, and still no data
 * race when the admin endpoint reads them from the control thread. */
#ifndef STAPLER_STATS_H
#define STAPLER_STATS_H

#include <stdatomic.h>
#include <stdint.h>

enum stat_counter {
  STAT_ACCEPTED,
  STAT_REJECTED,                /* over limits.max_connections */
  STAT_ACCEPT_PAUSES,           /* accepting stopped for a while: no file descriptor left */
  STAT_BACKEND_NO_FD,           /* backend connections not opened: no file descriptor left */
  STAT_HANDSHAKES_RSA,
  STAT_HANDSHAKES_ECDSA,
  STAT_HANDSHAKES_TLS12,
  STAT_HANDSHAKES_TLS13,
  STAT_HANDSHAKES_RESUMED,
  STAT_HANDSHAKE_FAIL_TIMEOUT,
  STAT_HANDSHAKE_FAIL_NO_CERTIFICATE, /* the client can use none of the name's certificates */
  STAT_HANDSHAKE_FAIL_NO_STAPLE,      /* the OCSP policy forbade serving */
  STAT_HANDSHAKE_FAIL_BAD_SNI,        /* a server_name that is not a host name */
  STAT_HANDSHAKE_FAIL_PROTOCOL,       /* anything else BoringSSL or stapler refused */
  STAT_PROXY_HEADER_FAILURES,         /* bad PROXY protocol header from a load balancer */
  STAT_REQUESTS,                      /* HTTP/1.1 requests */
  STAT_REQUESTS_H2,                   /* HTTP/2 streams carrying a request */
  STAT_H2_ABUSE,                      /* HTTP/2 connections closed for abusive frames */
  STAT_RESPONSES_1XX,
  STAT_RESPONSES_2XX,
  STAT_RESPONSES_3XX,
  STAT_RESPONSES_4XX,
  STAT_RESPONSES_5XX,
  STAT_ERRORS_SENT,                   /* responses stapler made itself (400, 502, ...) */
  STAT_BACKEND_CONNECT_FAILURES,
  STAT_BACKEND_CONNECT_TIMEOUTS,
  STAT_BACKEND_RESPONSE_TIMEOUTS,
  STAT_BACKEND_BROKEN,                /* closed, reset or garbled mid-exchange */
  STAT_BYTES_FROM_CLIENT,
  STAT_BYTES_TO_CLIENT,
  STAT_STAPLES_SENT,
  STAT_COUNT
};

struct stats {
  _Atomic uint64_t v[STAT_COUNT];
};

static inline void stat_add(struct stats *s, enum stat_counter k, uint64_t n) {
  atomic_store_explicit(&s->v[k], atomic_load_explicit(&s->v[k], memory_order_relaxed) + n,
                        memory_order_relaxed);
}

static inline uint64_t stat_get(const struct stats *s, enum stat_counter k) {
  return atomic_load_explicit(&((struct stats *)s)->v[k], memory_order_relaxed);
}

#endif
