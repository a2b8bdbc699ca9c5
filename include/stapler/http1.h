/* HTTP/1.1 on the wire, free of I/O: a streaming reader that turns bytes into checked message
 * heads and bodies (requests from clients, responses from the backend), and the writers that
 * serialise them again. Every message is re-serialised, never passed through: what leaves
 * stapler is exactly what it parsed, so framing a parser tolerated cannot be smuggled past it.
 *
 * A reader stops after each complete message (llhttp pauses); its owner calls
 * http1_reader_next() when it is ready for the next one, which is how pipelined requests wait
 * for the response before them. */
#ifndef STAPLER_HTTP1_H
#define STAPLER_HTTP1_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stapler/http_head.h"

struct http1_reader_events {
  /* A head is complete and checked (in reader->head). */
  void (*head)(void *ctx);
  void (*body)(void *ctx, const uint8_t *data, size_t len);
  /* The message is complete; a chunked body's trailer fields are in reader->head from index
   * reader->trailer_from on. */
  void (*end)(void *ctx);
};

enum http1_reader_state {
  HTTP1_READER_IDLE,   /* between messages: no byte of the next one yet */
  HTTP1_READER_HEAD,   /* reading a head */
  HTTP1_READER_BODY,   /* reading a body */
  HTTP1_READER_DONE,   /* a message ended: paused until http1_reader_next() */
  HTTP1_READER_FAILED, /* malformed input: see error_status and error */
};

struct http1_reader {
  llhttp_t parser;
  enum http1_reader_state state;
  struct http_head head;
  const struct http1_reader_events *events;
  void *ctx;
  size_t max_header_bytes;
  size_t trailer_from; /* first trailer field in `head` */
  bool in_trailers;
  /* Requests: the Upgrade tokens that may be forwarded (backend.upgrades). */
  char *const *upgrades;
  size_t upgrade_count;
  /* Responses: the request was HEAD, so the response has no body whatever it says. */
  bool response_to_head;
  bool keep_alive; /* the message just read lets the connection carry another */
  /* Why reading failed: 400, 405, 431 or 505 for requests, 502 for responses. */
  int error_status;
  const char *error;
};

void http1_reader_init(struct http1_reader *r, llhttp_type_t type,
                       const struct http1_reader_events *events, void *ctx,
                       size_t max_header_bytes);
void http1_reader_free(struct http1_reader *r);

/* Feeds bytes. Returns how many were used: all of them, or fewer when a message ended (state
 * DONE: the rest belongs to what follows) or reading failed (state FAILED). */
size_t http1_reader_feed(struct http1_reader *r, const uint8_t *data, size_t len);
/* The peer closed: completes a response delimited by the connection's end. True when that
 * ended a message. */
bool http1_reader_eof(struct http1_reader *r);
/* Whether a message in progress would end with the connection (HTTP_FRAMING_EOF). */
bool http1_reader_needs_eof(const struct http1_reader *r);
/* After DONE: get ready for the next message. */
void http1_reader_next(struct http1_reader *r);
/* Whether llhttp thinks the connection may carry another message after this one. */
bool http1_reader_keep_alive(const struct http1_reader *r);

/* ---- writing ----------------------------------------------------------------------------- */

/* Collects output in a small buffer and hands it to `emit` in few calls. */
struct http1_writer {
  char buf[4096];
  size_t len;
  void (*emit)(void *ctx, const uint8_t *data, size_t len);
  void *ctx;
};

void http1_writer_put(struct http1_writer *w, const void *data, size_t n);
void http1_writer_str(struct http1_writer *w, const char *s);
void http1_writer_flush(struct http1_writer *w);

/* The request as the backend gets it: request line in origin-form, Host first, the client's
 * end-to-end fields (minus hop-by-hop ones, those Connection names, and with `forwarding`
 * given, any X-Forwarded-* or Forwarded), the framing fields for the body it will send, the
 * upgrade the request may make, then `forwarding` (stapler's X-Forwarded-* lines). `version`
 * is the minor version of HTTP/1.x to speak. */
void http1_write_request(struct http1_writer *w, const struct http_head *req, int minor,
                         const char *forwarding, size_t forwarding_len);

/* A response head for an HTTP/1.x client: the backend's end-to-end fields, then the framing
 * `framing` (CHUNKED only for 1.1 clients), `Connection: close` when `close`, and for a 101
 * the upgrade the backend accepted. */
void http1_write_response(struct http1_writer *w, const struct http_head *res,
                          enum http_framing framing, bool close);

/* Body bytes in `framing`: a chunk of their own when CHUNKED, as they are otherwise. */
void http1_write_body(struct http1_writer *w, enum http_framing framing, const uint8_t *data,
                      size_t len);
/* The end of a body in `framing`: for CHUNKED the last chunk with the trailer fields of
 * `trailers` (may be NULL) from `from` on that may be forwarded; nothing otherwise. */
void http1_write_end(struct http1_writer *w, enum http_framing framing,
                     const struct http_head *trailers, size_t from);

/* How a response in `res->framing` goes to an HTTP/1.`client_minor` client (chunks become a
 * close-delimited body for HTTP/1.0), and whether the connection must then end. */
enum http_framing http1_client_framing(const struct http_head *res, int client_minor,
                                       bool *must_close);

/* A complete small response stapler makes itself, with `Connection: close`. Returns its
 * length. */
size_t http1_error_response(int status, char *out, size_t cap);

/* The Upgrade token of `res` (a 101) matches what the request asked for. */
bool http1_upgrade_accepted(const struct http_head *req, const struct http_head *res);

#endif
