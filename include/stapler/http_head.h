/* An HTTP message's head, free of any wire format: the request or response it describes and its
 * header fields, every string in one arena. HTTP/1.1 (llhttp) and HTTP/2 (nghttp2) heads are
 * both turned into this, checked by the same rules, and written out for the backend by http1.c.
 *
 * The rules a proxy must apply to fields live here too: which fields are hop-by-hop (RFC 9110
 * 7.6.1), which carry framing or forwarding and so never come from a trailer, what a valid
 * field name, field value and Host authority are. */
#ifndef STAPLER_HTTP_HEAD_H
#define STAPLER_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_field {
  uint32_t name_off, name_len, value_off, value_len;
};

/* How a message's body is delimited. */
enum http_framing {
  HTTP_FRAMING_NONE,    /* no body */
  HTTP_FRAMING_LENGTH,  /* Content-Length bytes */
  HTTP_FRAMING_CHUNKED, /* chunked transfer coding (HTTP/1.1) or DATA frames (HTTP/2) */
  HTTP_FRAMING_EOF,     /* a response that ends when the backend closes */
};

struct http_head {
  char *text; /* the arena */
  size_t len, cap;
  struct http_field *fields;
  size_t field_count, field_cap;
  size_t wire_bytes; /* size as received, for limits.max_header_bytes */
  int last_span;     /* kind of the last span appended (see http_head_append) */

  /* Requests: */
  uint32_t method_off, method_len;   /* the method token */
  uint32_t target_off, target_len;   /* origin-form (or "*"); a response's reason phrase */
  uint32_t authority_off, authority_len; /* Host, or the authority of an absolute-form target */
  bool has_authority;
  uint32_t upgrade_off, upgrade_len; /* the one Upgrade token forwarded (requests), or the
                                        token a 101 accepted; 0 length: none */
  /* Both: */
  uint8_t version_major, version_minor;
  int status; /* responses */
  enum http_framing framing;
  uint64_t content_length; /* HTTP_FRAMING_LENGTH */
};

enum http_span { HTTP_SPAN_NONE, HTTP_SPAN_TARGET, HTTP_SPAN_NAME, HTTP_SPAN_VALUE };

void http_head_reset(struct http_head *h);
void http_head_free(struct http_head *h);

/* Appends bytes of a target, field name or field value as a parser delivers them (a span of a
 * new kind starts a new token). False when the head grows past `limit` bytes. */
bool http_head_append(struct http_head *h, enum http_span kind, const char *at, size_t len,
                      size_t limit);
/* Adds a whole field (HTTP/2 headers, fields stapler writes). */
void http_head_add(struct http_head *h, const char *name, size_t name_len, const char *value,
                   size_t value_len);
/* Stores `s` in the arena and returns its offset (targets and authorities made by stapler). */
uint32_t http_head_store(struct http_head *h, const char *s, size_t len);
/* The same for bytes already in the arena (which storing may move). */
uint32_t http_head_store_from(struct http_head *h, uint32_t off, size_t len);

static inline const char *http_head_name(const struct http_head *h, size_t i) {
  return h->text ? h->text + h->fields[i].name_off : ""; /* empty until a byte is stored */
}
static inline const char *http_head_value(const struct http_head *h, size_t i) {
  return h->text ? h->text + h->fields[i].value_off : ""; /* empty until a byte is stored */
}
static inline const char *http_head_target(const struct http_head *h) {
  return h->text ? h->text + h->target_off : ""; /* empty until a byte is stored */
}
static inline const char *http_head_authority(const struct http_head *h) {
  return h->text ? h->text + h->authority_off : ""; /* empty until a byte is stored */
}
static inline const char *http_head_upgrade(const struct http_head *h) {
  return h->text ? h->text + h->upgrade_off : ""; /* empty until a byte is stored */
}

/* Whether the request's method is exactly `method` (methods are case-sensitive). */
bool http_head_method_is(const struct http_head *h, const char *method);
/* Case-insensitive comparison of field i's name. */
bool http_head_name_is(const struct http_head *h, size_t i, const char *name);
/* Number of fields named `name`; the index of the first one in *first (if any). */
size_t http_head_count(const struct http_head *h, const char *name, size_t *first);
/* Whether a comma-separated list field (Connection, Upgrade, ...) holds `token`, over every
 * field named `name`. Case-insensitive. */
bool http_head_has_token(const struct http_head *h, const char *name, const char *token);
/* Whether field i is named as a token in any Connection field (hop-by-hop by declaration). */
bool http_head_named_by_connection(const struct http_head *h, size_t i);

/* The request-target in `h`: origin-form, "*" for OPTIONS, or absolute-form, whose authority
 * then replaces Host (RFC 9112 3.2.2) and which is rewritten to origin-form. No control byte,
 * space, non-ASCII byte or fragment. Returns NULL, or what is wrong. */
const char *http_head_check_target(struct http_head *h);

/* Field rules. */
bool http_token_valid(const char *s, size_t n);          /* RFC 9110 5.6.2 */
bool http_field_value_valid(const char *s, size_t n);    /* no CR, LF or NUL; no other CTLs */
bool http_authority_valid(const char *s, size_t n);      /* host [":" port], no userinfo */
/* Fields that only describe one connection and are never forwarded as received. */
bool http_is_hop_by_hop(const char *name, size_t n);
/* Fields a trailer may not carry onward: framing, routing, forwarding, connection control. */
bool http_is_forbidden_trailer(const char *name, size_t n);
/* X-Forwarded-* and Forwarded: replaced by stapler's own when forwarded_headers is on. */
bool http_is_forwarding(const char *name, size_t n);

/* Safe to send twice (RFC 9110 9.2.2): a request that met a closing kept-alive connection may
 * be retried. */
bool http_head_idempotent(const struct http_head *h);

#endif
