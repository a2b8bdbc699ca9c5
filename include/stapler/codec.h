/* The protocol a client session speaks once TLS is up, behind one interface so the session
 * need not know which: HTTP/1.1 (codec_h1.c), HTTP/2 (codec_h2.c) or, in tcp mode, a tunnel
 * (codec_tcp.c).
 *
 * A codec turns client bytes into exchanges and exchange events back into client bytes. The
 * session calls it; it calls the session (session.h) and its exchanges (exchange.h). It is
 * owned by its session and freed with it. */
#ifndef STAPLER_CODEC_H
#define STAPLER_CODEC_H

#include <stddef.h>
#include <stdint.h>

struct session;
struct codec;

struct codec_ops {
  /* Decrypted client bytes. Returns how many it took: fewer when it cannot take more now, and
   * then it calls session_resume() once it can. */
  size_t (*input)(struct codec *c, const uint8_t *data, size_t len);
  /* The client finished sending (close_notify or FIN). */
  void (*client_eof)(struct codec *c);
  /* The session's output fell below SESSION_LOW_WATER: the backend may be read again. */
  void (*client_writable)(struct codec *c);
  /* The next moment the codec needs a look (UINT64_MAX: none) and the look itself. */
  uint64_t (*deadline)(struct codec *c);
  void (*expire)(struct codec *c, uint64_t now);
  /* The worker is stopping: end gracefully (after the exchange in flight). */
  void (*drain)(struct codec *c);
  /* A reload made a new generation current: a codec that can move its client to it without
   * losing a request does (HTTP/2: GOAWAY). May be NULL. */
  void (*generation_changed)(struct codec *c);
  /* The session is gone: log what was cut short, free everything. */
  void (*free)(struct codec *c);
};

struct codec {
  const struct codec_ops *ops;
  struct session *session;
};

/* HTTP/1.1 (http mode). */
struct codec *codec_h1_new(struct session *s);
/* HTTP/2 (http mode, ALPN h2). */
struct codec *codec_h2_new(struct session *s);
/* A raw tunnel to the backend (tcp mode). */
struct codec *codec_tcp_new(struct session *s);

#endif
