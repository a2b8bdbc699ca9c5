/* stapler's own HTTP/1.1 client for OCSP responders and caIssuers URLs, on libuv and llhttp (no
 * library that links OpenSSL may be loaded next to BoringSSL). One fetch: resolve, connect to
 * the addresses in the order the lookup gave them until one accepts (as nginx does), send a GET
 * (short OCSP requests, cacheable per RFC 5019, and certificates) or a POST, read the answer.
 * Every step is asynchronous and bounded by one overall timeout, of which each address gets an
 * equal share of what is left; the answer is capped in size; interim 1xx responses are skipped;
 * redirects are refused. */
#ifndef STAPLER_OCSP_FETCH_H
#define STAPLER_OCSP_FETCH_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define OCSP_FETCH_MAX_BODY (64 * 1024)

struct ocsp_fetch_result {
  int ok;               /* 1: a 200 answer with a body of an acceptable size */
  int http_status;      /* 0 when no answer arrived */
  const char *content_type; /* the answer's Content-Type, "" when it had none */
  const uint8_t *body;  /* body and content_type are valid only during the callback */
  size_t body_len;
  char error[256];      /* what went wrong, for the log */
};

typedef void (*ocsp_fetch_cb)(void *ctx, const struct ocsp_fetch_result *result);

struct ocsp_fetch;

/* Starts fetching the answer to `request` (DER) from `url` (http://host[:port]/path). The
 * callback runs exactly once on `loop`, later (never from within this call), unless the fetch
 * is cancelled first. NULL when the URL is unusable or the lookup cannot start (`error` then
 * says why). */
struct ocsp_fetch *ocsp_fetch_start(uv_loop_t *loop, const char *url, const uint8_t *request,
                                    size_t request_len, uint64_t timeout_ms, ocsp_fetch_cb cb,
                                    void *ctx, char *error, size_t error_len);

/* Starts a plain GET of `url` (a caIssuers URL: a certificate or a PKCS#7 bundle). The same
 * contract as ocsp_fetch_start. */
struct ocsp_fetch *ocsp_fetch_get(uv_loop_t *loop, const char *url, uint64_t timeout_ms,
                                  ocsp_fetch_cb cb, void *ctx, char *error, size_t error_len);

/* Stops a fetch; its callback will not run. The memory is released asynchronously. */
void ocsp_fetch_cancel(struct ocsp_fetch *f);

/* A responder's answer being read: the HTTP parsing, apart from the sockets so that it can be
 * tested and fuzzed on its own. */
struct ocsp_answer {
  llhttp_t parser;
  llhttp_settings_t settings;
  int status;
  bool too_big, complete;
  bool interim;            /* the message being read is a 1xx before the real answer */
  char field[16];          /* the header name being read (only Content-Type matters) */
  size_t field_len;        /* sizeof field when longer: then it is none we want */
  bool in_content_type;    /* the header value being read is Content-Type's */
  char content_type[128];  /* NUL-terminated, cut at the size */
  size_t content_type_len;
  uint8_t *body; /* heap, owned */
  size_t body_len;
};

enum ocsp_answer_state { OCSP_ANSWER_MORE, OCSP_ANSWER_DONE, OCSP_ANSWER_FAILED };

void ocsp_answer_init(struct ocsp_answer *a);
void ocsp_answer_free(struct ocsp_answer *a);
/* Feeds bytes from the responder. On FAILED or DONE, `error` says why it is unusable (empty
 * when the answer is a usable 200). */
enum ocsp_answer_state ocsp_answer_feed(struct ocsp_answer *a, const uint8_t *data, size_t len,
                                        char *error, size_t error_len);
/* The responder closed the connection. */
enum ocsp_answer_state ocsp_answer_eof(struct ocsp_answer *a, char *error, size_t error_len);

/* Whether a Content-Type value names the media type `want` (case-insensitive, parameters such
 * as "; charset=..." ignored). */
bool ocsp_media_type_is(const char *content_type, const char *want);

/* Splits http://host[:port]/path. Exposed for tests. */
int ocsp_url_parse(const char *url, char *host, size_t host_cap, uint16_t *port, char *path,
                   size_t path_cap);

#endif
