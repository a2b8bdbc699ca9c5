/* HTTP/1.1 forwarding logic for one client connection, free of I/O: client bytes in, rewritten
 * request bytes out to the backend; backend bytes in, response bytes out to the client.
 *
 * Every message is parsed with llhttp and re-serialised: request headers get X-Forwarded-*,
 * chunked bodies are re-framed, so what reaches the backend is exactly what was parsed (no
 * smuggling through framing the parser tolerated). One request is in flight at a time: parsing
 * of a pipelined request waits until the previous response is complete. */
#ifndef STAPLER_HTTP1_H
#define STAPLER_HTTP1_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http1_sink {
  void (*to_backend)(void *ctx, const uint8_t *data, size_t len);
  void (*to_client)(void *ctx, const uint8_t *data, size_t len);
  void *ctx;
};

struct http1_params {
  uint32_t max_header_bytes;
  bool forwarded_headers;  /* drop client X-Forwarded-*, Forwarded; add ours */
  char client_ip[64];      /* for X-Forwarded-For */
  uint16_t server_port;    /* for X-Forwarded-Port */
};

struct http1_field {
  uint32_t name_off, name_len, value_off, value_len;
};

/* One message's start line and headers, accumulated across reads. */
struct http1_head {
  char *text; /* arena holding every string; grows up to the header limit */
  size_t len, cap;
  struct http1_field *fields;
  size_t field_count, field_cap;
  uint32_t target_off, target_len; /* request-target, or reason phrase */
  size_t bytes;                    /* size on the wire, for the limit */
  int last;                        /* which kind of span was appended last */
  bool in_trailers;
  size_t trailer_from;             /* first trailer field, after the last chunk */
};

enum http1_req_state {
  HTTP1_REQ_IDLE,     /* between requests: no byte of the next one yet */
  HTTP1_REQ_HEADERS,  /* reading a request's headers */
  HTTP1_REQ_BODY,     /* forwarding a request body */
  HTTP1_REQ_WAIT,     /* request complete, its response is not: parsing paused */
};

struct http1 {
  llhttp_t req, res;
  struct http1_params params;
  char forwarding[160];  /* the X-Forwarded-* lines, the same for every request */
  size_t forwarding_len;
  struct http1_sink sink;
  struct http1_head req_head, res_head;
  enum http1_req_state req_state;
  bool req_chunked, res_chunked;
  bool req_is_head;         /* response has no body */
  bool req_is_upgrade;      /* request asked to switch protocols */
  bool awaiting_response;   /* request sent upstream, final response not complete */
  bool response_started;    /* bytes of the current response went to the client */
  bool res_reading;         /* inside a response message */
  unsigned begun;            /* requests whose first byte arrived */
  unsigned requests, responses;

  /* Results the connection acts on after each call: */
  int error_status;         /* 400, 405, 408, 431, 502 or 504: answer it and close */
  const char *error_reason; /* for the log line */
  bool backend_broken;      /* backend spoke garbage mid-response: close both sides */
  bool upgraded;            /* 101 received: both directions are now a raw tunnel */
  bool close_after_response; /* a side asked for Connection: close */
  int last_status;          /* status code of the last response, for access logs */
};

void http1_init(struct http1 *h, const struct http1_params *params,
                const struct http1_sink *sink);
void http1_free(struct http1 *h);

/* Feeds decrypted client bytes. Returns how many were consumed: fewer than `len` when a
 * request is complete and waits for its response (keep the rest and feed it again after the
 * response), after an upgrade (the rest is tunnel data), or after close_after_response. */
size_t http1_client_data(struct http1 *h, const uint8_t *data, size_t len);

/* Feeds backend bytes. After an upgrade the remaining bytes are passed to the client as-is. */
void http1_backend_data(struct http1 *h, const uint8_t *data, size_t len);

/* The backend closed its side. Completes a response delimited by EOF, or records a 502. */
void http1_backend_eof(struct http1 *h);

/* True when no request is in flight and no bytes of a new one arrived: safe to close. */
bool http1_idle(const struct http1 *h);

/* Formats a complete small error response with `Connection: close`. Returns its length. */
size_t http1_error_response(int status, char *out, size_t cap);

#endif
