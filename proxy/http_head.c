#include "stapler/http_head.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stapler/util.h"

void http_head_reset(struct http_head *h) {
  char *text = h->text;
  struct http_field *fields = h->fields;
  size_t cap = h->cap, field_cap = h->field_cap;
  memset(h, 0, sizeof *h);
  h->text = text;
  h->cap = cap;
  h->fields = fields;
  h->field_cap = field_cap;
}

void http_head_free(struct http_head *h) {
  free(h->text);
  free(h->fields);
  memset(h, 0, sizeof *h);
}

static void reserve(struct http_head *h, size_t more) {
  if (h->text && h->len + more <= h->cap) return;
  h->cap = MAX(h->cap * 2, MAX(h->len + more, (size_t)512));
  h->text = xrealloc(h->text, h->cap);
}

static void new_field(struct http_head *h) {
  if (h->field_count == h->field_cap) {
    h->field_cap = h->field_cap ? h->field_cap * 2 : 16;
    h->fields = xrealloc(h->fields, h->field_cap * sizeof *h->fields);
  }
  h->fields[h->field_count++] = (struct http_field){(uint32_t)h->len, 0, (uint32_t)h->len, 0};
}

bool http_head_append(struct http_head *h, enum http_span kind, const char *at, size_t len,
                      size_t limit) {
  bool starts = (int)kind != h->last_span;
  h->wire_bytes += len + (starts ? 2 : 0); /* ": " or CRLF around each token */
  if (h->wire_bytes > limit) return false;
  reserve(h, len);
  if (starts) {
    if (kind == HTTP_SPAN_NAME)
      new_field(h);
    else if (kind == HTTP_SPAN_VALUE && h->field_count > 0)
      h->fields[h->field_count - 1].value_off = (uint32_t)h->len;
    else if (kind == HTTP_SPAN_TARGET)
      h->target_off = (uint32_t)h->len;
    h->last_span = kind;
  }
  memcpy(h->text + h->len, at, len);
  h->len += len;
  if (kind == HTTP_SPAN_NAME) h->fields[h->field_count - 1].name_len += (uint32_t)len;
  if (kind == HTTP_SPAN_VALUE && h->field_count > 0)
    h->fields[h->field_count - 1].value_len += (uint32_t)len;
  if (kind == HTTP_SPAN_TARGET) h->target_len += (uint32_t)len;
  return true;
}

uint32_t http_head_store(struct http_head *h, const char *s, size_t len) {
  reserve(h, len);
  uint32_t off = (uint32_t)h->len;
  memcpy(h->text + h->len, s, len);
  h->len += len;
  return off;
}

uint32_t http_head_store_from(struct http_head *h, uint32_t from, size_t len) {
  reserve(h, len);
  uint32_t off = (uint32_t)h->len;
  memmove(h->text + h->len, h->text + from, len);
  h->len += len;
  return off;
}

void http_head_add(struct http_head *h, const char *name, size_t name_len, const char *value,
                   size_t value_len) {
  uint32_t n = http_head_store(h, name, name_len);
  uint32_t v = http_head_store(h, value, value_len);
  new_field(h);
  h->fields[h->field_count - 1] =
      (struct http_field){n, (uint32_t)name_len, v, (uint32_t)value_len};
  h->last_span = HTTP_SPAN_NONE;
}

bool http_head_method_is(const struct http_head *h, const char *method) {
  return h->method_len == strlen(method) && !memcmp(h->text + h->method_off, method,
                                                    h->method_len);
}

static bool name_eq(const char *a, size_t n, const char *name) {
  return n == strlen(name) && !strncasecmp(a, name, n);
}

bool http_head_name_is(const struct http_head *h, size_t i, const char *name) {
  return name_eq(http_head_name(h, i), h->fields[i].name_len, name);
}

size_t http_head_count(const struct http_head *h, const char *name, size_t *first) {
  size_t n = 0;
  for (size_t i = 0; i < h->field_count; i++) {
    if (!http_head_name_is(h, i, name)) continue;
    if (n++ == 0 && first) *first = i;
  }
  return n;
}

/* Calls `fn` for each comma-separated element of a list value, trimmed of whitespace, until it
 * returns true. */
static bool each_token(const char *v, size_t n, bool (*fn)(const char *t, size_t tn, void *arg),
                       void *arg) {
  size_t i = 0;
  while (i < n) {
    size_t start = i;
    while (i < n && v[i] != ',') i++;
    size_t end = i;
    while (start < end && (v[start] == ' ' || v[start] == '\t')) start++;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) end--;
    if (end > start && fn(v + start, end - start, arg)) return true;
    i++;
  }
  return false;
}

struct token_query {
  const char *want;
  size_t want_len;
};

static bool token_matches(const char *t, size_t tn, void *arg) {
  const struct token_query *q = arg;
  return tn == q->want_len && !strncasecmp(t, q->want, tn);
}

bool http_head_has_token(const struct http_head *h, const char *name, const char *token) {
  struct token_query q = {token, strlen(token)};
  for (size_t i = 0; i < h->field_count; i++)
    if (http_head_name_is(h, i, name) &&
        each_token(http_head_value(h, i), h->fields[i].value_len, token_matches, &q))
      return true;
  return false;
}

bool http_head_named_by_connection(const struct http_head *h, size_t i) {
  struct token_query q = {http_head_name(h, i), h->fields[i].name_len};
  for (size_t k = 0; k < h->field_count; k++)
    if (http_head_name_is(h, k, "connection") &&
        each_token(http_head_value(h, k), h->fields[k].value_len, token_matches, &q))
      return true;
  return false;
}

static bool scheme_is(const char *t, size_t n, const char *scheme) {
  size_t k = strlen(scheme);
  return n > k && !strncasecmp(t, scheme, k);
}

const char *http_head_check_target(struct http_head *h) {
  const char *t = http_head_target(h);
  size_t n = h->target_len;
  if (n == 0) return "empty request-target";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)t[i];
    if (c <= 0x20 || c >= 0x7f) return "control or non-ASCII byte in the request-target";
    if (c == '#') return "fragment in the request-target";
  }
  if (t[0] == '/') return NULL;
  if (n == 1 && t[0] == '*')
    return http_head_method_is(h, "OPTIONS") ? NULL : "'*' target for a method other than OPTIONS";
  size_t skip = scheme_is(t, n, "http://") ? 7 : scheme_is(t, n, "https://") ? 8 : 0;
  if (!skip) return "request-target is neither origin-form nor absolute-form";
  size_t a = skip, e = a;
  while (e < n && t[e] != '/' && t[e] != '?') e++;
  if (!http_authority_valid(t + a, e - a)) return "invalid authority in the request-target";
  h->authority_off = h->target_off + (uint32_t)a;
  h->authority_len = (uint32_t)(e - a);
  h->has_authority = true;
  if (e == n) { /* no path: "/" */
    h->target_off = http_head_store(h, "/", 1);
    h->target_len = 1;
  } else if (t[e] == '?') { /* "/" then the query */
    uint32_t off = http_head_store(h, "/", 1);
    http_head_store_from(h, h->target_off + (uint32_t)e, n - e);
    h->target_off = off;
    h->target_len = (uint32_t)(n - e + 1);
  } else {
    h->target_off += (uint32_t)e;
    h->target_len -= (uint32_t)e;
  }
  return NULL;
}

/* ---- rules ---------------------------------------------------------------------------------*/

static bool is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool http_token_valid(const char *s, size_t n) {
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++)
    if (!is_tchar((unsigned char)s[i])) return false;
  return true;
}

bool http_field_value_valid(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

/* A deliberately narrow host: a DNS-style name, IPv4, or a bracketed IPv6 literal. Anything a
 * backend could read two ways (userinfo, commas, slashes, percent-escapes) is refused. */
bool http_authority_valid(const char *s, size_t n) {
  if (n == 0 || n > 255) return false;
  size_t i = 0;
  if (s[0] == '[') {
    for (i = 1; i < n && s[i] != ']'; i++) {
      char c = s[i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
            c == ':' || c == '.'))
        return false;
    }
    if (i >= n || i == 1) return false;
    i++; /* past ']' */
  } else {
    for (; i < n && s[i] != ':'; i++) {
      char c = s[i];
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            c == '-' || c == '.' || c == '_' || c == '~'))
        return false;
    }
    if (i == 0) return false;
  }
  if (i == n) return true;
  if (s[i] != ':' || i + 1 == n || n - i - 1 > 5) return false;
  unsigned port = 0;
  for (i++; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    port = port * 10 + (unsigned)(s[i] - '0');
  }
  return port <= 65535;
}

static bool in_list(const char *name, size_t n, const char *const *list) {
  for (; *list; list++)
    if (name_eq(name, n, *list)) return true;
  return false;
}

bool http_is_hop_by_hop(const char *name, size_t n) {
  static const char *const kHopByHop[] = {
      "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade",
      "http2-settings", NULL};
  return in_list(name, n, kHopByHop);
}

bool http_is_forwarding(const char *name, size_t n) {
  static const char *const kForwarding[] = {"x-forwarded-for", "x-forwarded-proto",
                                            "x-forwarded-port", "x-forwarded-host", "forwarded",
                                            NULL};
  return in_list(name, n, kForwarding);
}

bool http_is_forbidden_trailer(const char *name, size_t n) {
  static const char *const kNotInTrailers[] = {
      "host", "content-length", "transfer-encoding", "connection", "keep-alive",
      "proxy-connection", "te", "trailer", "upgrade", "http2-settings", "expect", NULL};
  return in_list(name, n, kNotInTrailers) || http_is_forwarding(name, n);
}

bool http_head_idempotent(const struct http_head *h) {
  static const char *const kIdempotent[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE",
                                            NULL};
  for (const char *const *m = kIdempotent; *m; m++)
    if (http_head_method_is(h, *m)) return true;
  return false;
}
