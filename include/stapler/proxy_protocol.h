/* The PROXY protocol (HAProxy, versions 1 and 2): reading the header an L4 load balancer puts
 * in front of a connection, and writing one for the backend so it sees the real client
 * (Cowboy and Ranch read it natively with `proxy_header: true`). Pure functions on bytes. */
#ifndef STAPLER_PROXY_PROTOCOL_H
#define STAPLER_PROXY_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PP_V1_MAX 107       /* longest v1 line, CRLF included */
#define PP_V2_HEADER 16
#define PP_V2_MAX_LEN 1024  /* what we accept after the 16-byte header */

enum pp_result { PP_INCOMPLETE, PP_OK, PP_BAD };

struct pp_info {
  int version;       /* 1 or 2 */
  bool local;        /* LOCAL (v2) or UNKNOWN (v1): no addresses, use the socket's */
  struct sockaddr_storage src, dst;
};

/* Parses a header at the start of `data`. PP_OK sets `*used` to its length; PP_BAD sets
 * `*error`. PP_INCOMPLETE: read more (at most PP_V2_HEADER + PP_V2_MAX_LEN bytes are needed). */
enum pp_result pp_parse(const uint8_t *data, size_t len, struct pp_info *out, size_t *used,
                        const char **error);

/* "PROXY TCP4 src dst sport dport\r\n". Returns the length, 0 if the addresses are not TCP. */
size_t pp_write_v1(char *out, size_t cap, const struct sockaddr *src,
                   const struct sockaddr *dst);

/* A v2 PROXY command for TCP over IPv4/IPv6, with PP2_TYPE_ALPN and PP2_TYPE_AUTHORITY TLVs
 * when `alpn` / `authority` are given. Returns the length, 0 when it does not fit. */
size_t pp_write_v2(uint8_t *out, size_t cap, const struct sockaddr *src,
                   const struct sockaddr *dst, const uint8_t *alpn, size_t alpn_len,
                   const char *authority);

#endif
