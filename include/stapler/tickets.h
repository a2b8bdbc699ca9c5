/* TLS session ticket keys, shared by every worker and every config generation, so a client can
 * resume on any worker, after a reload, and (with tls.ticket_key_file) on any instance that
 * shares the file.
 *
 * A key set is immutable; the first key encrypts new tickets, all of them decrypt (a ticket
 * under an older key is accepted and replaced). Sets are published with an atomic swap by the
 * control thread and read by workers inside the ticket callback (see qsbr.h).
 *
 * Key file: one key per line, 160 hex digits = 80 bytes: a 16-byte name, a 32-byte HMAC-SHA256
 * key and a 32-byte AES-256 key. '#' starts a comment. Make one with `openssl rand -hex 80`. */
#ifndef STAPLER_TICKETS_H
#define STAPLER_TICKETS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TICKET_KEY_BYTES 80
#define TICKET_ROTATE_SECONDS (12 * 3600) /* generated keys: a new one this often */
#define TICKET_KEYS_KEPT 3                /* ... and the newest three decrypt */

struct ticket_key {
  uint8_t name[16];
  uint8_t hmac[32];
  uint8_t aes[32];
};

struct ticket_keys {
  size_t count;
  struct ticket_key keys[]; /* keys[0] encrypts */
};

/* Makes `ctx` issue and accept tickets with the published keys. */
void tickets_setup_ctx(SSL_CTX *ctx);

/* Publishes `keys` (taking ownership); returns the previous set for the caller to retire. */
struct ticket_keys *tickets_publish(struct ticket_keys *keys);

/* A new random key first, then up to TICKET_KEYS_KEPT - 1 keys of `previous` (may be NULL). */
/* The same keys in a new set (tests replace the published set with it to race readers). */
struct ticket_keys *tickets_copy(const struct ticket_keys *from);
struct ticket_keys *tickets_rotate(const struct ticket_keys *previous);

/* Reads a key file. NULL with `err` on any problem. */
struct ticket_keys *tickets_load_file(const char *path, char *err, size_t err_len);

void tickets_free(void *keys);

#endif
