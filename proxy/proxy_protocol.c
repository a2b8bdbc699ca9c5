/* See https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt */
#include "stapler/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t kV2Signature[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                         0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

#define PP2_TYPE_ALPN 0x01
#define PP2_TYPE_AUTHORITY 0x02

/* ---- version 1 --------------------------------------------------------------------------*/

static bool parse_port(const char *s, uint16_t *out) {
  if (!*s || (s[0] == '0' && s[1])) return false; /* no leading zeros */
  unsigned long v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return false;
    v = v * 10 + (unsigned long)(*s - '0');
    if (v > 65535) return false;
  }
  *out = (uint16_t)v;
  return true;
}

static bool set_addr(struct sockaddr_storage *ss, int family, const char *ip, uint16_t port) {
  memset(ss, 0, sizeof *ss);
  if (family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    return inet_pton(AF_INET, ip, &in->sin_addr) == 1;
  }
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  return inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1;
}

static enum pp_result parse_v1(const uint8_t *data, size_t len, struct pp_info *out,
                               size_t *used, const char **error) {
  const uint8_t *cr = memchr(data, '\r', len < PP_V1_MAX ? len : PP_V1_MAX);
  if (!cr) {
    if (len >= PP_V1_MAX || memchr(data, '\n', len)) {
      *error = "PROXY v1 line too long or not ended by CRLF";
      return PP_BAD;
    }
    return PP_INCOMPLETE;
  }
  size_t line_len = (size_t)(cr - data);
  if (line_len + 1 >= len) return PP_INCOMPLETE;
  if (cr[1] != '\n') {
    *error = "PROXY v1 line not ended by CRLF";
    return PP_BAD;
  }
  if (memchr(data, '\0', line_len)) {
    *error = "NUL byte in a PROXY v1 line";
    return PP_BAD;
  }
  char line[PP_V1_MAX + 1];
  memcpy(line, data, line_len);
  line[line_len] = '\0';
  out->version = 1;
  *used = line_len + 2;
  if (!strcmp(line, "PROXY UNKNOWN") || !strncmp(line, "PROXY UNKNOWN ", 14)) {
    out->local = true;
    return PP_OK;
  }
  /* Fields sscanf does not reach stay empty strings: a short line is read as one. */
  char proto[8] = "", src[64] = "", dst[64] = "", sport[8] = "", dport[8] = "", extra[2] = "";
  int n = sscanf(line, "PROXY %7s %63s %63s %7s %7s%1s", proto, src, dst, sport, dport, extra);
  int family = !strcmp(proto, "TCP4") ? AF_INET : !strcmp(proto, "TCP6") ? AF_INET6 : 0;
  uint16_t sp, dp;
  /* Exactly single spaces between fields, as the specification requires. */
  char rebuilt[256];
  snprintf(rebuilt, sizeof rebuilt, "PROXY %s %s %s %s %s", proto, src, dst, sport, dport);
  if (n != 5 || !family || strcmp(rebuilt, line) != 0 || !parse_port(sport, &sp) ||
      !parse_port(dport, &dp) || !set_addr(&out->src, family, src, sp) ||
      !set_addr(&out->dst, family, dst, dp)) {
    *error = "malformed PROXY v1 line";
    return PP_BAD;
  }
  out->local = false;
  return PP_OK;
}

/* ---- version 2 --------------------------------------------------------------------------*/

static enum pp_result parse_v2(const uint8_t *data, size_t len, struct pp_info *out,
                               size_t *used, const char **error) {
  if (len < PP_V2_HEADER) return PP_INCOMPLETE;
  uint8_t ver_cmd = data[12], fam = data[13];
  size_t body = (size_t)data[14] << 8 | data[15];
  if ((ver_cmd >> 4) != 2 || (ver_cmd & 0x0f) > 1) {
    *error = "PROXY v2 header with an unknown version or command";
    return PP_BAD;
  }
  if (body > PP_V2_MAX_LEN) {
    *error = "PROXY v2 header too long";
    return PP_BAD;
  }
  if (len < PP_V2_HEADER + body) return PP_INCOMPLETE;
  const uint8_t *p = data + PP_V2_HEADER;
  out->version = 2;
  *used = PP_V2_HEADER + body;
  out->local = (ver_cmd & 0x0f) == 0;
  if (out->local) return PP_OK; /* LOCAL: health checks from the balancer itself */
  memset(&out->src, 0, sizeof out->src);
  memset(&out->dst, 0, sizeof out->dst);
  if (fam == 0x11 && body >= 12) { /* TCP over IPv4 */
    struct sockaddr_in *s = (struct sockaddr_in *)&out->src, *d = (struct sockaddr_in *)&out->dst;
    s->sin_family = d->sin_family = AF_INET;
    memcpy(&s->sin_addr, p, 4);
    memcpy(&d->sin_addr, p + 4, 4);
    memcpy(&s->sin_port, p + 8, 2);
    memcpy(&d->sin_port, p + 10, 2);
  } else if (fam == 0x21 && body >= 36) { /* TCP over IPv6 */
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src;
    struct sockaddr_in6 *d = (struct sockaddr_in6 *)&out->dst;
    s->sin6_family = d->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, p, 16);
    memcpy(&d->sin6_addr, p + 16, 16);
    memcpy(&s->sin6_port, p + 32, 2);
    memcpy(&d->sin6_port, p + 34, 2);
  } else if (fam == 0x00 || fam == 0x31 || fam == 0x32) {
    /* UNSPEC, or a client on a UNIX socket of the balancer's host (HAProxy accepts these with
     * the addresses unknown): keep the socket's addresses. */
    out->local = true;
  } else {
    *error = "PROXY v2 header for an unsupported address family";
    return PP_BAD;
  }
  return PP_OK;
}

enum pp_result pp_parse(const uint8_t *data, size_t len, struct pp_info *out, size_t *used,
                        const char **error) {
  size_t n = len < sizeof kV2Signature ? len : sizeof kV2Signature;
  if (memcmp(data, kV2Signature, n) == 0)
    return len < sizeof kV2Signature ? PP_INCOMPLETE : parse_v2(data, len, out, used, error);
  static const char v1[] = "PROXY ";
  n = len < 6 ? len : 6;
  if (memcmp(data, v1, n) == 0) return len < 6 ? PP_INCOMPLETE : parse_v1(data, len, out, used, error);
  *error = "no PROXY protocol header";
  return PP_BAD;
}

/* ---- writing ------------------------------------------------------------------------------*/

static bool ip_port(const struct sockaddr *sa, char *ip, size_t cap, uint16_t *port) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    *port = ntohs(in->sin_port);
    return inet_ntop(AF_INET, &in->sin_addr, ip, (socklen_t)cap) != NULL;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    *port = ntohs(in6->sin6_port);
    return inet_ntop(AF_INET6, &in6->sin6_addr, ip, (socklen_t)cap) != NULL;
  }
  return false;
}

size_t pp_write_v1(char *out, size_t cap, const struct sockaddr *src,
                   const struct sockaddr *dst) {
  char sip[64], dip[64];
  uint16_t sport, dport;
  if (src->sa_family != dst->sa_family || !ip_port(src, sip, sizeof sip, &sport) ||
      !ip_port(dst, dip, sizeof dip, &dport))
    return 0;
  int n = snprintf(out, cap, "PROXY %s %s %s %u %u\r\n",
                   src->sa_family == AF_INET ? "TCP4" : "TCP6", sip, dip, sport, dport);
  return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t put_tlv(uint8_t *out, size_t cap, size_t pos, uint8_t type, const void *value,
                      size_t len) {
  if (len > 0xffff || pos + 3 + len > cap) return 0;
  out[pos] = type;
  out[pos + 1] = (uint8_t)(len >> 8);
  out[pos + 2] = (uint8_t)len;
  memcpy(out + pos + 3, value, len);
  return pos + 3 + len;
}

size_t pp_write_v2(uint8_t *out, size_t cap, const struct sockaddr *src,
                   const struct sockaddr *dst, const uint8_t *alpn, size_t alpn_len,
                   const char *authority) {
  if (src->sa_family != dst->sa_family || cap < PP_V2_HEADER + 36) return 0;
  memcpy(out, kV2Signature, sizeof kV2Signature);
  out[12] = 0x21; /* version 2, PROXY */
  size_t pos = PP_V2_HEADER;
  if (src->sa_family == AF_INET) {
    const struct sockaddr_in *s = (const struct sockaddr_in *)src;
    const struct sockaddr_in *d = (const struct sockaddr_in *)dst;
    out[13] = 0x11;
    memcpy(out + pos, &s->sin_addr, 4);
    memcpy(out + pos + 4, &d->sin_addr, 4);
    memcpy(out + pos + 8, &s->sin_port, 2);
    memcpy(out + pos + 10, &d->sin_port, 2);
    pos += 12;
  } else if (src->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)src;
    const struct sockaddr_in6 *d = (const struct sockaddr_in6 *)dst;
    out[13] = 0x21;
    memcpy(out + pos, &s->sin6_addr, 16);
    memcpy(out + pos + 16, &d->sin6_addr, 16);
    memcpy(out + pos + 32, &s->sin6_port, 2);
    memcpy(out + pos + 34, &d->sin6_port, 2);
    pos += 36;
  } else {
    return 0;
  }
  if (alpn && alpn_len && !(pos = put_tlv(out, cap, pos, PP2_TYPE_ALPN, alpn, alpn_len)))
    return 0;
  if (authority && *authority &&
      !(pos = put_tlv(out, cap, pos, PP2_TYPE_AUTHORITY, authority, strlen(authority))))
    return 0;
  out[14] = (uint8_t)((pos - PP_V2_HEADER) >> 8);
  out[15] = (uint8_t)(pos - PP_V2_HEADER);
  return pos;
}
