/* TLS for one client connection, BoringSSL over stapler's own buffers: ciphertext read from
 * the socket is handed in with tls_feed(); ciphertext BoringSSL writes collects in a buffer
 * chain the connection sends with tls_take_output(). The select-certificate callback picks the
 * certificate and staple per handshake (see certselect.h). */
#ifndef STAPLER_TLS_H
#define STAPLER_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>

#include "stapler/buf.h"
#include "stapler/certselect.h"
#include "stapler/config.h"
#include "stapler/strlist.h"

struct generation;

struct tls_session {
  SSL *ssl;
  struct generation *gen; /* not owned: the connection holds the reference */
  struct bufpool *pool;
  struct buf *in;         /* ciphertext received and not yet consumed by BoringSSL */
  struct bufchain out;    /* ciphertext waiting to be sent */
  /* Set during the handshake: */
  const struct cert *cert; /* the certificate chosen (lives as long as `gen`) */
  bool stapled;            /* an OCSP response went with it */
  bool status_requested;   /* the client asked for one */
  enum certselect_failure select_failure;
  /* Why stapler refused the handshake when that needs the client's own bytes to tell (a
   * server_name that is not a host name, ALPN offers), escaped for a log line; else NULL.
   * Owned. */
  char *refusal;
};

/* The SSL_CTX for a generation: versions, ciphers, groups, ALPN, tickets and the callbacks. */
SSL_CTX *tls_ctx_new(const struct config *cfg, struct strlist *errors);

bool tls_session_init(struct tls_session *t, struct generation *gen, struct bufpool *pool);
void tls_session_free(struct tls_session *t);

/* Hands a buffer of received ciphertext to the session (it takes the buffer). */
void tls_feed(struct tls_session *t, struct buf *b);
/* True while received ciphertext waits to be consumed. */
bool tls_has_input(const struct tls_session *t);

/* Encrypts `len` bytes into the output chain. False when the session is broken. */
bool tls_write(struct tls_session *t, const uint8_t *data, size_t len);

/* Which BoringSSL the process runs on: the library's path, and whether it is Debian's build
 * (OPENSSL_SMALL) or one rebuilt for speed. */
void tls_library_description(char *out, size_t cap);

/* Describes the last BoringSSL error for a log line. */
const char *tls_error_string(void);

#endif
