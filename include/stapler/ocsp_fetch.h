/* stapler's own HTTP/1.1 client for OCSP responders, on libuv and llhttp (no library that links
 * OpenSSL may be loaded next to BoringSSL). One fetch: resolve, connect, GET (short requests,
 * cacheable per RFC 5019) or POST, read the answer. Every step is asynchronous and bounded by
 * one overall timeout; the answer is capped in size; redirects are refused. */
#ifndef STAPLER_OCSP_FETCH_H
#define STAPLER_OCSP_FETCH_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define OCSP_FETCH_MAX_BODY (64 * 1024)

struct ocsp_fetch_result {
  int ok;               /* 1: a 200 answer with a body of the right type and size */
  int http_status;      /* 0 when no answer arrived */
  const uint8_t *body;  /* valid only during the callback */
  size_t body_len;
  char error[200];      /* what went wrong, for the log */
};

typedef void (*ocsp_fetch_cb)(void *ctx, const struct ocsp_fetch_result *result);

struct ocsp_fetch;

/* Starts fetching the answer to `request` (DER) from `url` (http://host[:port]/path). The
 * callback runs exactly once on `loop`, unless the fetch is cancelled first. NULL only when the
 * URL is unusable (`error` then says why). */
struct ocsp_fetch *ocsp_fetch_start(uv_loop_t *loop, const char *url, const uint8_t *request,
                                    size_t request_len, uint64_t timeout_ms, ocsp_fetch_cb cb,
                                    void *ctx, char *error, size_t error_len);

/* Stops a fetch; its callback will not run. The memory is released asynchronously. */
void ocsp_fetch_cancel(struct ocsp_fetch *f);

/* A responder's answer being read: the HTTP parsing, apart from the sockets so that it can be
 * tested and fuzzed on its own. */
struct ocsp_answer {
  llhttp_t parser;
  llhttp_settings_t settings;
  int status;
  bool too_big, complete;
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

/* Splits http://host[:port]/path. Exposed for tests. */
int ocsp_url_parse(const char *url, char *host, size_t host_cap, uint16_t *port, char *path,
                   size_t path_cap);

#endif
