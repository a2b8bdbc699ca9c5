/* Counters kept per worker (no sharing on the hot path) and summed when read. */
#ifndef STAPLER_STATS_H
#define STAPLER_STATS_H

#include <stdint.h>

struct stats {
  uint64_t accepted;
  uint64_t rejected;           /* over limits.max_connections */
  uint64_t handshakes_rsa, handshakes_ecdsa;
  uint64_t handshakes_tls12, handshakes_tls13, handshakes_resumed;
  uint64_t handshake_failures;
  uint64_t handshake_timeouts;
  uint64_t staples_sent;
  uint64_t requests;
  uint64_t responses_1xx, responses_2xx, responses_3xx, responses_4xx, responses_5xx;
  uint64_t errors_sent;        /* 400/408/431/502/504 made by stapler */
  uint64_t backend_connect_failures;
  uint64_t backend_timeouts;
  uint64_t bytes_from_client, bytes_to_client;
};

#endif
