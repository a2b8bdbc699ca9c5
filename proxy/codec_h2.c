/* HTTP/2 toward the client (RFC 9113) on libnghttp2, which does the framing, HPACK and flow
 * control; this file does the proxying. Each stream becomes one exchange: its request goes to
 * the backend as HTTP/1.1 on a pooled connection, its response comes back as HEADERS and DATA
 * on the stream. A WebSocket opened with extended CONNECT (RFC 8441) becomes an HTTP/1.1
 * Upgrade to the backend, then a tunnel of DATA frames.
 *
 * Flow control is tied to the backend both ways, per stream: request DATA is acknowledged
 * (WINDOW_UPDATE) only once the backend took it, and a stream's response stops being read
 * from the backend while too much of it waits to be sent, so one slow stream stalls nobody
 * else and memory stays bounded.
 *
 * Defences, besides nghttp2's own checks: at most H2_MAX_STREAMS streams; header lists up to
 * limits.max_header_bytes (else 431); RST_STREAM, CONTINUATION and acknowledged-frame floods
 * limited by nghttp2 options; a budget for the frames that cost the server and give the
 * client nothing (SETTINGS, PING, PRIORITY, RST_STREAM, empty DATA): spent, the connection is
 * closed with ENHANCE_YOUR_CALM. Timeouts: the first request within
 * timeouts.request_header, header blocks within it too, streams and connections idle for
 * timeouts.idle. A reload or a stop sends GOAWAY with the last stream id and lets the streams
 * in flight finish. */
#include <ctype.h>
#include <nghttp2/nghttp2.h>
#include <openssl/base64.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stapler/access_log.h"
#include "stapler/codec.h"
#include "stapler/exchange.h"
#include "stapler/generation.h"
#include "stapler/http1.h"
#include "stapler/log.h"
#include "stapler/session.h"
#include "stapler/util.h"
#include "stapler/worker.h"

#define H2_MAX_STREAMS 100
#define H2_STREAM_WINDOW (256 * 1024)       /* per stream, for request bodies */
#define H2_CONNECTION_WINDOW (1024 * 1024)  /* for all of them */
#define H2_STREAM_HIGH_WATER (128 * 1024)   /* response bytes waiting per stream */
#define H2_STREAM_LOW_WATER (32 * 1024)
/* Frames that give the client nothing it could not get otherwise: a burst, then per second. */
#define H2_CHEAP_FRAME_BURST 1000
#define H2_CHEAP_FRAMES_PER_SECOND 100

enum h2_state {
  H2_OPEN,     /* streams come and go */
  H2_GOAWAY,   /* GOAWAY sent: the streams in flight finish, no new ones */
  H2_CLOSING,  /* the session is finishing or closed */
};

enum h2_stream_state {
  H2_STREAM_HEADERS,   /* request header block arriving */
  H2_STREAM_FORWARDED, /* an exchange runs */
  H2_STREAM_ANSWERED,  /* stapler answered itself (400, 431, 502, ...): nothing forwarded */
  H2_STREAM_DONE,      /* response complete (or reset); waiting for nghttp2 to close it */
};

struct codec_h2;

struct h2_stream {
  int32_t id;
  struct codec_h2 *h2;
  struct h2_stream *prev, *next;
  enum h2_stream_state state;
  struct http_head req;
  struct exchange *exchange;
  struct exchange_record record; /* for streams stapler answered itself */
  int refuse_status;             /* set while reading headers: answer this instead */
  const char *refuse_why;
  bool websocket;          /* extended CONNECT :protocol websocket */
  char ws_key[32];         /* the Sec-WebSocket-Key sent to the backend */
  bool tunnel;             /* after the backend's 101 */
  bool request_ended;      /* END_STREAM from the client */
  bool response_started;   /* a final HEADERS went out */
  bool response_ended;     /* the exchange's response is complete */
  bool paused;             /* the exchange's response reading is paused */
  size_t unconsumed;       /* request DATA taken but not yet acknowledged */
  struct bufchain held;    /* WebSocket DATA that arrived before the backend's 101 */
  struct bufchain out;     /* response bytes waiting for nghttp2 to send */
  struct http_head trailers; /* response trailers, sent after the last DATA */
  bool has_trailers;
  const uint8_t *static_body; /* stapler's own answer */
  size_t static_len, static_off;
  uint64_t activity_at;
};

struct codec_h2 {
  struct codec base;
  enum h2_state state;
  nghttp2_session *ng;
  struct h2_stream *streams;
  unsigned stream_count;
  unsigned requests;      /* streams that got as far as a request */
  int in_callbacks;       /* inside nghttp2: sending waits until it returns */
  uint64_t headers_started_at; /* a header block is arriving (0: none) */
  double budget;          /* cheap-frame budget (tokens) */
  uint64_t budget_at;
};

static struct session *session_of(struct codec_h2 *h) { return h->base.session; }
static const struct config *cfg_of(struct codec_h2 *h) { return session_of(h)->gen->cfg; }
static struct stats *stats_of(struct codec_h2 *h) { return &session_of(h)->worker->stats; }
static uint64_t now_of(struct codec_h2 *h) { return uv_now(&session_of(h)->worker->loop); }

static void flush(struct codec_h2 *h);

/* ---- streams ---------------------------------------------------------------------------------*/

static struct h2_stream *stream_new(struct codec_h2 *h, int32_t id) {
  struct h2_stream *st = xcalloc(1, sizeof *st);
  st->id = id;
  st->h2 = h;
  st->activity_at = now_of(h);
  st->record.started_at = st->activity_at;
  st->next = h->streams;
  if (h->streams) h->streams->prev = st;
  h->streams = st;
  h->stream_count++;
  return st;
}

static void count_response(struct codec_h2 *h, int status) {
  static const enum stat_counter by_class[] = {STAT_RESPONSES_1XX, STAT_RESPONSES_2XX,
                                               STAT_RESPONSES_3XX, STAT_RESPONSES_4XX,
                                               STAT_RESPONSES_5XX};
  int cls = status / 100;
  stat_add(stats_of(h), by_class[cls >= 1 && cls <= 5 ? cls - 1 : 4], 1);
}

static void log_stream(struct h2_stream *st, int status) {
  struct exchange_record *r = st->exchange ? &st->exchange->record : &st->record;
  if (r->logged) return;
  r->status = status;
  r->logged = true;
  access_log_exchange(session_of(st->h2), r, st->req.method_len ? &st->req : NULL, "h2");
}

static void stream_free(struct h2_stream *st) {
  struct codec_h2 *h = st->h2;
  if (st->prev)
    st->prev->next = st->next;
  else
    h->streams = st->next;
  if (st->next) st->next->prev = st->prev;
  h->stream_count--;
  if (st->tunnel && st->exchange)
    access_log_tunnel(session_of(h), &st->exchange->record, "upgrade");
  else if (!(st->exchange ? st->exchange->record.logged : st->record.logged) &&
           st->state != H2_STREAM_HEADERS)
    log_stream(st, st->response_started && st->exchange ? st->exchange->record.status : 499);
  exchange_free(st->exchange);
  http_head_free(&st->req);
  http_head_free(&st->trailers);
  bufchain_clear(&st->held);
  bufchain_clear(&st->out);
  free(st);
}

static struct h2_stream *stream_of(struct codec_h2 *h, int32_t id) {
  return nghttp2_session_get_stream_user_data(h->ng, id);
}

/* ---- sending -------------------------------------------------------------------------------*/

static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *user) {
  struct h2_stream *st = src->ptr;
  if (st->static_body) {
    size_t n = MIN(len, st->static_len - st->static_off);
    memcpy(buf, st->static_body + st->static_off, n);
    st->static_off += n;
    if (st->static_off == st->static_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
  }
  size_t n = 0;
  while (n < len && st->out.head) {
    struct buf *b = st->out.head;
    size_t k = MIN(len - n, b->len - b->off);
    memcpy(buf + n, b->data + b->off, k);
    b->off += k;
    n += k;
    st->out.len -= k;
    if (b->off == b->len) {
      st->out.head = b->next;
      if (!st->out.head) st->out.tail = NULL;
      buf_put(b);
    }
  }
  if (st->paused && st->exchange && st->out.len < H2_STREAM_LOW_WATER) {
    st->paused = false;
    exchange_pause_response(st->exchange, false);
  }
  if (st->out.len == 0 && st->response_ended) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (st->has_trailers) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      nghttp2_nv nva[64];
      size_t count = 0;
      for (size_t i = 0; i < st->trailers.field_count && count < 64; i++) {
        nva[count++] = (nghttp2_nv){(uint8_t *)http_head_name(&st->trailers, i),
                                    (uint8_t *)http_head_value(&st->trailers, i),
                                    st->trailers.fields[i].name_len,
                                    st->trailers.fields[i].value_len, NGHTTP2_NV_FLAG_NONE};
      }
      nghttp2_submit_trailer(ng, id, nva, count);
    }
    return (ssize_t)n;
  }
  if (n == 0) return NGHTTP2_ERR_DEFERRED; /* resumed when the backend sends more */
  return (ssize_t)n;
}

static nghttp2_data_provider body_of(struct h2_stream *st) {
  nghttp2_data_provider p = {.source.ptr = st, .read_callback = read_body};
  return p;
}

/* Fields of `res` fit for HTTP/2: lowercase names, none of the connection-specific ones. */
static size_t response_fields(const struct http_head *res, bool keep_length, nghttp2_nv *nva,
                              size_t cap, char *names, size_t names_cap) {
  size_t count = 0, used = 0;
  for (size_t i = 0; i < res->field_count && count < cap; i++) {
    const char *name = http_head_name(res, i);
    size_t n = res->fields[i].name_len;
    if (http_is_hop_by_hop(name, n) || http_head_named_by_connection(res, i) ||
        (http_head_name_is(res, i, "content-length") && !keep_length) || used + n > names_cap)
      continue;
    for (size_t k = 0; k < n; k++) names[used + k] = (char)tolower((unsigned char)name[k]);
    nva[count++] = (nghttp2_nv){(uint8_t *)names + used, (uint8_t *)http_head_value(res, i), n,
                                res->fields[i].value_len, NGHTTP2_NV_FLAG_NONE};
    used += n;
  }
  return count;
}

/* Stapler's own answer on a stream (no exchange reached the backend, or it failed before a
 * response head went out). */
static void answer(struct h2_stream *st, int status, const char *why) {
  struct codec_h2 *h = st->h2;
  static const char *const bodies[] = {"400 Bad Request\n", "405 Method Not Allowed\n",
                                       "408 Request Timeout\n",
                                       "431 Request Header Fields Too Large\n",
                                       "502 Bad Gateway\n", "504 Gateway Timeout\n",
                                       "500 Error\n"};
  const char *body = status == 400 ? bodies[0] : status == 405 ? bodies[1]
                     : status == 408 ? bodies[2] : status == 431 ? bodies[3]
                     : status == 502 ? bodies[4] : status == 504 ? bodies[5] : bodies[6];
  log_msg(status >= 500 ? LOG_WARN : LOG_INFO, "%s:%u: stream %d: %d: %s",
          session_of(h)->client_ip, session_of(h)->client_port, st->id, status, why);
  char code[4], length[24];
  snprintf(code, sizeof code, "%03d", status);
  snprintf(length, sizeof length, "%zu", strlen(body));
  nghttp2_nv nva[] = {
      {(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"content-length", (uint8_t *)length, 14, strlen(length), NGHTTP2_NV_FLAG_NONE},
  };
  st->static_body = (const uint8_t *)body;
  st->static_len = strlen(body);
  nghttp2_data_provider p = body_of(st);
  nghttp2_submit_response(h->ng, st->id, nva, 3, &p);
  st->response_started = true;
  stat_add(stats_of(h), STAT_ERRORS_SENT, 1);
  count_response(h, status);
  if (st->exchange) {
    log_stream(st, status);
    exchange_free(st->exchange); /* its backend connection closes; queued bytes die */
    st->exchange = NULL;
    st->record.logged = true;
  } else {
    log_stream(st, status);
  }
  st->state = H2_STREAM_ANSWERED;
}

/* ---- exchange events -------------------------------------------------------------------*/

static bool websocket_accepted(const struct h2_stream *st, const struct http_head *res) {
  static const char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  char joined[64];
  int n = snprintf(joined, sizeof joined, "%s%s", st->ws_key, kGuid);
  uint8_t digest[SHA_DIGEST_LENGTH];
  SHA1((const uint8_t *)joined, (size_t)n, digest);
  uint8_t want[32];
  size_t want_len = EVP_EncodeBlock(want, digest, sizeof digest);
  size_t i;
  return http_head_count(res, "sec-websocket-accept", &i) == 1 &&
         res->fields[i].value_len == want_len &&
         !memcmp(http_head_value(res, i), want, want_len);
}

static void on_response_head(void *owner, struct exchange *e, const struct http_head *res) {
  struct h2_stream *st = owner;
  struct codec_h2 *h = st->h2;
  if (st->state != H2_STREAM_FORWARDED) return;
  st->activity_at = now_of(h);
  nghttp2_nv nva[128];
  char names[8192], code[4];
  snprintf(code, sizeof code, "%03d", res->status == 101 ? 200 : res->status);
  nva[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
  if (res->status == 101) {
    if (!st->websocket || !websocket_accepted(st, res)) {
      answer(st, 502, "backend's WebSocket handshake does not match the request");
      return;
    }
    /* The tunnel's answer is a 200 (RFC 8441 5), without the HTTP/1.1 handshake fields. */
    size_t count = 1;
    for (size_t i = 0; i < res->field_count && count < 8; i++) {
      if (!http_head_name_is(res, i, "sec-websocket-protocol") &&
          !http_head_name_is(res, i, "sec-websocket-extensions"))
        continue;
      nva[count++] = (nghttp2_nv){
          (uint8_t *)(http_head_name_is(res, i, "sec-websocket-protocol")
                          ? "sec-websocket-protocol" : "sec-websocket-extensions"),
          (uint8_t *)http_head_value(res, i),
          http_head_name_is(res, i, "sec-websocket-protocol") ? 22 : 24,
          res->fields[i].value_len, NGHTTP2_NV_FLAG_NONE};
    }
    st->tunnel = true;
    st->response_started = true;
    count_response(h, 101);
    log_stream(st, 101);
    e->record = (struct exchange_record){.started_at = now_of(h)}; /* the tunnel's own */
    nghttp2_data_provider p = body_of(st);
    nghttp2_submit_response(h->ng, st->id, nva, count, &p);
    /* WebSocket bytes that came before the 101 go first. */
    for (struct buf *b = bufchain_take(&st->held); b;) {
      struct buf *next = b->next;
      exchange_request_data(e, b->data + b->off, b->len - b->off);
      buf_put(b);
      b = next;
    }
    flush(h);
    return;
  }
  bool keep_length = res->framing == HTTP_FRAMING_LENGTH ||
                     (res->framing == HTTP_FRAMING_NONE && res->status >= 200 &&
                      res->status != 204);
  size_t count = 1 + response_fields(res, keep_length, nva + 1, 127, names, sizeof names);
  if (res->status < 200) { /* interim: relayed as a header block of its own */
    nghttp2_submit_headers(h->ng, NGHTTP2_FLAG_NONE, st->id, NULL, nva, count, NULL);
    flush(h);
    return;
  }
  st->response_started = true;
  if (res->framing == HTTP_FRAMING_NONE) {
    nghttp2_submit_response(h->ng, st->id, nva, count, NULL); /* END_STREAM on HEADERS */
  } else {
    nghttp2_data_provider p = body_of(st);
    nghttp2_submit_response(h->ng, st->id, nva, count, &p);
  }
  flush(h);
}

static void on_response_data(void *owner, struct exchange *e, const uint8_t *data, size_t len) {
  struct h2_stream *st = owner;
  struct codec_h2 *h = st->h2;
  if (st->state != H2_STREAM_FORWARDED) return;
  st->activity_at = now_of(h);
  session_touch(session_of(h));
  e->record.bytes_out += len;
  bufchain_append(&st->out, &session_of(h)->worker->pool, data, len);
  if (st->out.len > H2_STREAM_HIGH_WATER && !st->paused) {
    st->paused = true;
    exchange_pause_response(e, true);
  }
  nghttp2_session_resume_data(h->ng, st->id);
  flush(h);
}

static void on_response_end(void *owner, struct exchange *e, const struct http_head *trailers,
                            size_t from) {
  struct h2_stream *st = owner;
  struct codec_h2 *h = st->h2;
  if (st->state != H2_STREAM_FORWARDED) return;
  st->response_ended = true;
  if (trailers) {
    http_head_reset(&st->trailers);
    for (size_t i = from; i < trailers->field_count; i++) {
      const char *name = http_head_name(trailers, i);
      size_t n = trailers->fields[i].name_len;
      if (http_is_forbidden_trailer(name, n)) continue;
      char lower[256];
      if (n > sizeof lower) continue;
      for (size_t k = 0; k < n; k++) lower[k] = (char)tolower((unsigned char)name[k]);
      http_head_add(&st->trailers, lower, n, http_head_value(trailers, i),
                    trailers->fields[i].value_len);
      st->has_trailers = true;
    }
  }
  if (!st->tunnel) {
    count_response(h, e->record.status);
    log_stream(st, e->record.status);
  }
  nghttp2_session_resume_data(h->ng, st->id);
  flush(h);
}

static void on_failed(void *owner, struct exchange *e, int status, const char *why) {
  struct h2_stream *st = owner;
  struct codec_h2 *h = st->h2;
  if (st->state != H2_STREAM_FORWARDED) return;
  if (!st->response_started && status) {
    answer(st, status, why);
  } else {
    /* The response broke off: the client sees the stream reset, not a made-up ending. */
    log_stream(st, st->response_started ? e->record.status : 502);
    nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    st->state = H2_STREAM_DONE;
  }
  flush(h);
}

/* The backend took what was queued: acknowledge the request DATA held back. */
static void on_writable(void *owner, struct exchange *e) {
  struct h2_stream *st = owner;
  struct codec_h2 *h = st->h2;
  if (st->unconsumed && !exchange_congested(e)) {
    nghttp2_session_consume(h->ng, st->id, st->unconsumed);
    st->unconsumed = 0;
    flush(h);
  }
}

static const struct exchange_events kExchangeEvents = {on_response_head, on_response_data,
                                                       on_response_end, on_failed, on_writable};

/* ---- requests --------------------------------------------------------------------------*/

static void refuse(struct h2_stream *st, int status, const char *why) {
  if (!st->refuse_status) {
    st->refuse_status = status;
    st->refuse_why = why;
  }
}

/* A WebSocket over HTTP/2 becomes the HTTP/1.1 handshake the backend knows (RFC 6455 4.1). */
static void make_websocket_request(struct h2_stream *st) {
  struct http_head *req = &st->req;
  uint8_t nonce[16];
  RAND_bytes(nonce, sizeof nonce);
  EVP_EncodeBlock((uint8_t *)st->ws_key, nonce, sizeof nonce);
  req->method_off = http_head_store(req, "GET", 3);
  req->method_len = 3;
  req->upgrade_off = http_head_store(req, "websocket", 9);
  req->upgrade_len = 9;
  http_head_add(req, "sec-websocket-key", 17, st->ws_key, strlen(st->ws_key));
  req->framing = HTTP_FRAMING_NONE; /* what follows the 101 is the tunnel's */
}

static bool websocket_allowed(const struct config *cfg) {
  for (size_t i = 0; i < cfg->backend.upgrade_count; i++)
    if (!strcmp(cfg->backend.upgrades[i], "websocket")) return true;
  return false;
}

/* The whole request head arrived: check it and start its exchange. */
static void request_ready(struct codec_h2 *h, struct h2_stream *st, bool end_stream) {
  struct http_head *req = &st->req;
  h->requests++;
  stat_add(stats_of(h), STAT_REQUESTS_H2, 1);
  st->request_ended = end_stream;
  if (st->refuse_status) {
    answer(st, st->refuse_status, st->refuse_why);
    return;
  }
  if (!req->method_len || !req->target_len) {
    answer(st, 400, "request without :method or :path");
    return;
  }
  if (http_head_method_is(req, "CONNECT")) {
    if (!st->websocket) {
      answer(st, 405, "CONNECT is not supported");
      return;
    }
    make_websocket_request(st);
  }
  /* RFC 9113 8.3.1: origin-form, or "*" for OPTIONS; never absolute-form. */
  const char *t = http_head_target(req);
  if (t[0] != '/' && !(req->target_len == 1 && t[0] == '*')) {
    answer(st, 400, ":path is not origin-form");
    return;
  }
  const char *bad = http_head_check_target(req);
  if (bad) {
    answer(st, 400, bad);
    return;
  }
  if (!req->has_authority) {
    size_t host;
    if (http_head_count(req, "host", &host) == 1) {
      req->authority_off = req->fields[host].value_off;
      req->authority_len = req->fields[host].value_len;
      req->has_authority = true;
    }
  }
  if (!req->has_authority || !http_authority_valid(http_head_authority(req), req->authority_len)) {
    answer(st, 400, "missing or invalid :authority");
    return;
  }
  if (!st->websocket) {
    size_t cl;
    if (end_stream) {
      req->framing = HTTP_FRAMING_NONE;
    } else if (http_head_count(req, "content-length", &cl) == 1) {
      /* nghttp2 checked that it is a number and that the DATA frames add up to it. The
       * value is not NUL-terminated: read exactly its digits. */
      req->framing = HTTP_FRAMING_LENGTH;
      req->content_length = 0;
      for (uint32_t k = 0; k < req->fields[cl].value_len; k++)
        req->content_length = req->content_length * 10 + (uint64_t)(http_head_value(req, cl)[k] - '0');
    } else {
      req->framing = HTTP_FRAMING_CHUNKED;
    }
  }
  st->state = H2_STREAM_FORWARDED;
  st->exchange = exchange_new(session_of(h), &kExchangeEvents, st);
  st->exchange->record.started_at = st->record.started_at;
  st->exchange->record.bytes_in = req->wire_bytes;
  exchange_start(st->exchange, req, 1);
  if (end_stream && st->exchange && !st->websocket) exchange_request_end(st->exchange, NULL, 0);
  session_arm_timer(session_of(h)); /* the backend's connect timeout may come first */
}

/* ---- nghttp2 callbacks -------------------------------------------------------------------*/

static struct codec_h2 *of(void *user) { return user; }

/* Spends one token of the cheap-frame budget; false when it is gone. */
static bool spend(struct codec_h2 *h) {
  uint64_t now = now_of(h);
  h->budget = MIN((double)H2_CHEAP_FRAME_BURST,
                  h->budget + (double)(now - h->budget_at) * H2_CHEAP_FRAMES_PER_SECOND / 1000.0);
  h->budget_at = now;
  if (h->budget < 1) return false;
  h->budget -= 1;
  return true;
}

static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *user) {
  struct codec_h2 *h = of(user);
  bool cheap = hd->type == NGHTTP2_SETTINGS || hd->type == NGHTTP2_PING ||
               hd->type == NGHTTP2_PRIORITY || hd->type == NGHTTP2_RST_STREAM ||
               hd->type == NGHTTP2_CONTINUATION ||
               (hd->type == NGHTTP2_DATA && hd->length == 0 &&
                !(hd->flags & NGHTTP2_FLAG_END_STREAM));
  if (cheap && !spend(h)) {
    stat_add(stats_of(h), STAT_H2_ABUSE, 1);
    log_warn("%s:%u: HTTP/2 client sends frames that cost without carrying anything (type %u) "
             "faster than %d per second: closing", session_of(h)->client_ip,
             session_of(h)->client_port, hd->type, H2_CHEAP_FRAMES_PER_SECOND);
    nghttp2_session_terminate_session(ng, NGHTTP2_ENHANCE_YOUR_CALM);
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
  struct codec_h2 *h = of(user);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  struct h2_stream *st = stream_new(h, frame->hd.stream_id);
  nghttp2_session_set_stream_user_data(ng, frame->hd.stream_id, st);
  h->headers_started_at = now_of(h);
  session_arm_timer(session_of(h)); /* the header block must end within request_header */
  return 0;
}

static bool pseudo(const uint8_t *name, size_t n, const char *want) {
  return n == strlen(want) && !memcmp(name, want, n);
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user) {
  struct codec_h2 *h = of(user);
  struct h2_stream *st = stream_of(h, frame->hd.stream_id);
  if (!st || st->state != H2_STREAM_HEADERS) return 0;
  /* HPACK can make a few bytes on the wire into a large list: the limit counts what is
   * decoded, as RFC 9113 6.5.2 counts it (name + value + 32 per field). */
  st->req.wire_bytes += namelen + valuelen + 32;
  if (st->req.wire_bytes > cfg_of(h)->limits.max_header_bytes) {
    refuse(st, 431, "request header list too large");
    return 0;
  }
  if (st->refuse_status) return 0;
  if (!http_field_value_valid((const char *)value, valuelen)) {
    refuse(st, 400, "invalid header field value");
    return 0;
  }
  struct http_head *req = &st->req;
  if (namelen && name[0] == ':') {
    uint32_t off = http_head_store(req, (const char *)value, valuelen);
    if (pseudo(name, namelen, ":method")) {
      req->method_off = off;
      req->method_len = (uint32_t)valuelen;
    } else if (pseudo(name, namelen, ":path")) {
      req->target_off = off;
      req->target_len = (uint32_t)valuelen;
    } else if (pseudo(name, namelen, ":authority")) {
      req->authority_off = off;
      req->authority_len = (uint32_t)valuelen;
      req->has_authority = true;
    } else if (pseudo(name, namelen, ":protocol")) {
      if (valuelen == 9 && !strncasecmp((const char *)value, "websocket", 9) &&
          websocket_allowed(cfg_of(h)))
        st->websocket = true;
      else
        refuse(st, 400, "extended CONNECT for a protocol other than websocket");
    }
    return 0; /* :scheme: always https here */
  }
  if (namelen == 4 && !memcmp(name, "host", 4) && req->has_authority) return 0;
  if (http_is_forwarding((const char *)name, namelen) && cfg_of(h)->backend.forwarded_headers)
    return 0;
  if (namelen == 6 && !memcmp(name, "cookie", 6)) {
    /* RFC 9113 8.2.3: split cookie crumbs are joined again for HTTP/1.1. */
    size_t c;
    if (http_head_count(req, "cookie", &c) == 1) {
      uint32_t off = http_head_store_from(req, req->fields[c].value_off, req->fields[c].value_len);
      http_head_store(req, "; ", 2);
      http_head_store(req, (const char *)value, valuelen);
      req->fields[c].value_off = off;
      req->fields[c].value_len += (uint32_t)(2 + valuelen);
      return 0;
    }
  }
  http_head_add(req, (const char *)name, namelen, (const char *)value, valuelen);
  return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
  struct codec_h2 *h = of(user);
  session_touch(session_of(h));
  struct h2_stream *st = stream_of(h, frame->hd.stream_id);
  switch (frame->hd.type) {
  case NGHTTP2_HEADERS:
    if (!st) return 0;
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      h->headers_started_at = 0;
      request_ready(h, st, frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
    } else if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) { /* request trailers */
      st->request_ended = true;
      if (st->exchange) exchange_request_end(st->exchange, NULL, 0);
    }
    return 0;
  case NGHTTP2_DATA:
    if (st && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      st->request_ended = true;
      if (st->exchange) exchange_request_end(st->exchange, NULL, 0);
    }
    return 0;
  default:
    return 0;
  }
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user) {
  struct codec_h2 *h = of(user);
  struct h2_stream *st = stream_of(h, id);
  if (!st || !st->exchange || st->state != H2_STREAM_FORWARDED) {
    nghttp2_session_consume(ng, id, len); /* nobody takes it: acknowledge and drop */
    return 0;
  }
  st->activity_at = now_of(h);
  st->exchange->record.bytes_in += len;
  if (st->websocket && !st->tunnel) {
    bufchain_append(&st->held, &session_of(h)->worker->pool, data, len); /* after the 101 */
  } else {
    exchange_request_data(st->exchange, data, len);
  }
  if (!st->exchange || exchange_congested(st->exchange) || (st->websocket && !st->tunnel)) {
    st->unconsumed += len; /* acknowledged once the backend took it */
  } else {
    nghttp2_session_consume(ng, id, len);
  }
  return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error, void *user) {
  struct codec_h2 *h = of(user);
  struct h2_stream *st = stream_of(h, id);
  if (!st) return 0;
  nghttp2_session_set_stream_user_data(ng, id, NULL);
  if (st->unconsumed) nghttp2_session_consume_connection(ng, st->unconsumed);
  if (error != NGHTTP2_NO_ERROR && st->state == H2_STREAM_FORWARDED && !st->tunnel)
    log_stream(st, st->response_started && st->exchange ? st->exchange->record.status : 499);
  stream_free(st);
  return 0;
}

static ssize_t no_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags,
                       void *user) {
  return NGHTTP2_ERR_CALLBACK_FAILURE; /* mem_send is used instead */
}

/* ---- the codec ---------------------------------------------------------------------------*/

/* Hands nghttp2's frames to the session until it has none or the client is slow (then
 * client_writable brings us back). */
static void flush(struct codec_h2 *h) {
  if (h->in_callbacks || h->state == H2_CLOSING) return;
  struct session *s = session_of(h);
  bool produced;
  do {
    produced = false;
    while (!session_congested(s)) {
      const uint8_t *data;
      ssize_t n = nghttp2_session_mem_send(h->ng, &data);
      if (n < 0) {
        log_info("%s:%u: HTTP/2: %s", s->client_ip, s->client_port, nghttp2_strerror((int)n));
        h->state = H2_CLOSING;
        session_close(s, "HTTP/2 error");
        return;
      }
      if (n == 0) break;
      session_send(s, data, (size_t)n);
      produced = true;
    }
    session_flush(s); /* often all at once: then there may be room for more */
  } while (produced && !session_congested(s) && s->state == SESSION_OPEN);
  if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng)) {
    h->state = H2_CLOSING;
    session_finish(s, "HTTP/2 connection done");
  }
}

static size_t h2_input(struct codec *c, const uint8_t *data, size_t len) {
  struct codec_h2 *h = (struct codec_h2 *)c;
  if (h->state == H2_CLOSING) return len;
  h->in_callbacks++;
  ssize_t n = nghttp2_session_mem_recv(h->ng, data, len);
  h->in_callbacks--;
  if (n < 0) {
    struct session *s = session_of(h);
    log_info("%s:%u: HTTP/2 protocol error: %s", s->client_ip, s->client_port,
             nghttp2_strerror((int)n));
    if (n != NGHTTP2_ERR_CALLBACK_FAILURE)
      nghttp2_session_terminate_session(h->ng, NGHTTP2_PROTOCOL_ERROR);
    flush(h);                /* the GOAWAY */
    if (h->state != H2_CLOSING) {
      h->state = H2_CLOSING;
      session_finish(s, "HTTP/2 protocol error");
    }
    return len;
  }
  flush(h);
  return len;
}

static void h2_client_eof(struct codec *c) {
  struct codec_h2 *h = (struct codec_h2 *)c;
  if (h->state == H2_CLOSING) return;
  h->state = H2_CLOSING;
  session_finish(session_of(h), "client closed");
}

static void h2_client_writable(struct codec *c) { flush((struct codec_h2 *)c); }

static void goaway(struct codec_h2 *h) {
  if (h->state != H2_OPEN) return;
  h->state = H2_GOAWAY;
  nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng),
                        NGHTTP2_NO_ERROR, NULL, 0);
  flush(h);
}

static uint64_t h2_deadline(struct codec *c) {
  struct codec_h2 *h = (struct codec_h2 *)c;
  struct session *s = session_of(h);
  const struct config_timeouts *t = &cfg_of(h)->timeouts;
  uint64_t d = h->stream_count ? UINT64_MAX : s->last_activity + t->idle_ms;
  if (h->requests == 0) d = MIN(d, s->opened_at + t->request_header_ms);
  if (h->headers_started_at) d = MIN(d, h->headers_started_at + t->request_header_ms);
  for (struct h2_stream *st = h->streams; st; st = st->next) {
    if (st->exchange) d = MIN(d, exchange_deadline(st->exchange));
    if (st->state != H2_STREAM_DONE) d = MIN(d, st->activity_at + t->idle_ms);
  }
  return d;
}

static void h2_expire(struct codec *c, uint64_t now) {
  struct codec_h2 *h = (struct codec_h2 *)c;
  struct session *s = session_of(h);
  const struct config_timeouts *t = &cfg_of(h)->timeouts;
  if ((h->requests == 0 && now >= s->opened_at + t->request_header_ms && !h->stream_count) ||
      (h->headers_started_at && now >= h->headers_started_at + t->request_header_ms) ||
      (!h->stream_count && now >= s->last_activity + t->idle_ms)) {
    log_debug("%s:%u: HTTP/2 connection idle or too slow: closing", s->client_ip,
              s->client_port);
    nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
    flush(h);
    if (h->state != H2_CLOSING) {
      h->state = H2_CLOSING;
      session_finish(s, "idle");
    }
    return;
  }
  for (struct h2_stream *st = h->streams, *next; st; st = next) {
    next = st->next;
    if (st->exchange && now >= exchange_deadline(st->exchange)) {
      exchange_expire(st->exchange, now);
    } else if (st->state != H2_STREAM_DONE && now >= st->activity_at + t->idle_ms) {
      log_stream(st, st->response_started && st->exchange ? st->exchange->record.status : 408);
      nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
      st->state = H2_STREAM_DONE;
    }
  }
  flush(h);
}

static void h2_drain(struct codec *c) { goaway((struct codec_h2 *)c); }

static void h2_free(struct codec *c) {
  struct codec_h2 *h = (struct codec_h2 *)c;
  while (h->streams) stream_free(h->streams); /* logs the streams cut short */
  nghttp2_session_del(h->ng);
  free(h);
}

static const struct codec_ops kOps = {h2_input,   h2_client_eof, h2_client_writable,
                                      h2_deadline, h2_expire,     h2_drain,
                                      h2_drain,    h2_free};

struct codec *codec_h2_new(struct session *s) {
  struct codec_h2 *h = xcalloc(1, sizeof *h);
  h->base.ops = &kOps;
  h->base.session = s;
  h->state = H2_OPEN;
  h->budget = H2_CHEAP_FRAME_BURST;
  h->budget_at = uv_now(&s->worker->loop);
  nghttp2_session_callbacks *cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_send_callback(cb, no_send);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
  nghttp2_option *opt;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);    /* acknowledged as the backend takes it */
  nghttp2_option_set_max_outbound_ack(opt, 100);       /* SETTINGS/PING floods */
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_stream_reset_rate_limit(opt, 200, 50); /* rapid reset (CVE-2023-44487) */
  nghttp2_option_set_max_continuations(opt, 8);        /* CONTINUATION floods */
  nghttp2_session_server_new2(&h->ng, cb, h, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  const struct config *cfg = s->gen->cfg;
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg->limits.max_header_bytes},
      {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, websocket_allowed(cfg) ? 1 : 0},
  };
  nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, settings, ARRAY_SIZE(settings));
  nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, H2_CONNECTION_WINDOW);
  flush(h);
  return &h->base;
}
