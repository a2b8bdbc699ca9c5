#include "stapler/tickets.h"

#include <ctype.h>
#include <openssl/cipher.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/qsbr.h"
#include "stapler/util.h"

#define MAX_FILE_KEYS 16

static _Atomic(struct ticket_keys *) current;

static int use_keys(uint8_t *key_name, uint8_t *iv, EVP_CIPHER_CTX *cctx, HMAC_CTX *hctx,
                    int encrypt) {
  const struct ticket_keys *keys = atomic_load_explicit(&current, memory_order_seq_cst);
  if (!keys || keys->count == 0) return encrypt ? -1 : 0;
  if (encrypt) {
    const struct ticket_key *k = &keys->keys[0];
    memcpy(key_name, k->name, sizeof k->name);
    if (!RAND_bytes(iv, 16) ||
        !EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) ||
        !HMAC_Init_ex(hctx, k->hmac, sizeof k->hmac, EVP_sha256(), NULL))
      return -1;
    return 1;
  }
  for (size_t i = 0; i < keys->count; i++) {
    const struct ticket_key *k = &keys->keys[i];
    if (CRYPTO_memcmp(key_name, k->name, sizeof k->name) != 0) continue;
    if (!HMAC_Init_ex(hctx, k->hmac, sizeof k->hmac, EVP_sha256(), NULL) ||
        !EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv))
      return -1;
    return i == 0 ? 1 : 2; /* 2: valid, but issue a ticket under the current key */
  }
  return 0; /* unknown key: a full handshake */
}

/* The keys may be replaced and freed by the control thread at any moment: they are used only
 * inside this qsbr read section, and copied into the contexts before it ends. */
static int ticket_cb(SSL *ssl, uint8_t *key_name, uint8_t *iv, EVP_CIPHER_CTX *cctx,
                     HMAC_CTX *hctx, int encrypt) {
  qsbr_read_begin();
  int r = use_keys(key_name, iv, cctx, hctx, encrypt);
  qsbr_read_end();
  return r;
}

void tickets_setup_ctx(SSL_CTX *ctx) { SSL_CTX_set_tlsext_ticket_key_cb(ctx, ticket_cb); }

struct ticket_keys *tickets_publish(struct ticket_keys *keys) {
  return atomic_exchange_explicit(&current, keys, memory_order_seq_cst);
}

static struct ticket_keys *alloc_keys(size_t count) {
  struct ticket_keys *k = xcalloc(1, sizeof *k + count * sizeof k->keys[0]);
  k->count = count;
  return k;
}

struct ticket_keys *tickets_copy(const struct ticket_keys *from) {
  struct ticket_keys *k = alloc_keys(from->count);
  memcpy(k->keys, from->keys, from->count * sizeof k->keys[0]);
  return k;
}

struct ticket_keys *tickets_rotate(const struct ticket_keys *previous) {
  size_t keep = previous ? MIN(previous->count, (size_t)TICKET_KEYS_KEPT - 1) : 0;
  struct ticket_keys *k = alloc_keys(1 + keep);
  RAND_bytes((uint8_t *)&k->keys[0], sizeof k->keys[0]);
  for (size_t i = 0; i < keep; i++) k->keys[1 + i] = previous->keys[i];
  return k;
}

void tickets_free(void *p) {
  struct ticket_keys *k = p;
  if (!k) return;
  OPENSSL_cleanse(k->keys, k->count * sizeof k->keys[0]);
  free(k);
}

static int hex_value(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = tolower(c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Parses one line's 160 hex digits. */
static bool parse_key_line(const char *line, size_t len, struct ticket_key *out) {
  if (len != 2 * TICKET_KEY_BYTES) return false;
  uint8_t raw[TICKET_KEY_BYTES];
  for (size_t i = 0; i < TICKET_KEY_BYTES; i++) {
    int hi = hex_value((unsigned char)line[2 * i]), lo = hex_value((unsigned char)line[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    raw[i] = (uint8_t)(hi << 4 | lo);
  }
  memcpy(out->name, raw, 16);
  memcpy(out->hmac, raw + 16, 32);
  memcpy(out->aes, raw + 48, 32);
  OPENSSL_cleanse(raw, sizeof raw);
  return true;
}

struct ticket_keys *tickets_load_file(const char *path, char *err, size_t err_len) {
  uint8_t *text;
  size_t len;
  const char *why = read_file(path, &text, &len, 64 * 1024);
  if (why) {
    snprintf(err, err_len, "%s: cannot read the ticket key file: %s", path, why);
    return NULL;
  }
  struct ticket_keys *k = alloc_keys(MAX_FILE_KEYS);
  k->count = 0;
  size_t line_no = 0;
  bool ok = true;
  for (size_t pos = 0; pos < len && ok;) {
    size_t end = pos;
    while (end < len && text[end] != '\n') end++;
    line_no++;
    size_t a = pos, b = end;
    while (a < b && isspace(text[a])) a++;
    while (b > a && isspace(text[b - 1])) b--;
    if (a < b && text[a] != '#') {
      if (k->count == MAX_FILE_KEYS) {
        snprintf(err, err_len, "%s:%zu: more than %d keys", path, line_no, MAX_FILE_KEYS);
        ok = false;
      } else if (!parse_key_line((const char *)text + a, b - a, &k->keys[k->count])) {
        snprintf(err, err_len, "%s:%zu: expected 160 hex digits (openssl rand -hex 80)", path,
                 line_no);
        ok = false;
      } else {
        k->count++;
      }
    }
    pos = end + 1;
  }
  OPENSSL_cleanse(text, len);
  free(text);
  if (ok && k->count == 0) {
    snprintf(err, err_len, "%s: no key in the file", path);
    ok = false;
  }
  if (!ok) {
    tickets_free(k);
    return NULL;
  }
  return k;
}
