/* What a client can do, read from its ClientHello: the inputs to certificate choice. */
#ifndef STAPLER_CLIENTHELLO_H
#define STAPLER_CLIENTHELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Signature schemes that matter for choosing between our RSA and ECDSA certificates. */
enum {
  CAPS_SIG_ECDSA_P256_SHA256 = 1 << 0, /* 0x0403 */
  CAPS_SIG_ECDSA_P384_SHA384 = 1 << 1, /* 0x0503 */
  CAPS_SIG_ECDSA_P521_SHA512 = 1 << 2, /* 0x0603 */
  CAPS_SIG_ECDSA_SHA1 = 1 << 3,        /* 0x0203 */
  CAPS_SIG_RSA_PSS_RSAE = 1 << 4,      /* 0x0804..0x0806 */
  CAPS_SIG_RSA_PKCS1 = 1 << 5,         /* 0x0201, 0x0401, 0x0501, 0x0601 */
};

/* Groups we offer for key exchange (X25519, P-256, P-384) and the ECDSA certificate curves. */
enum {
  CAPS_GROUP_X25519 = 1 << 0,
  CAPS_GROUP_P256 = 1 << 1,
  CAPS_GROUP_P384 = 1 << 2,
};

/* Cipher suites, as far as we enable them. */
enum {
  CAPS_SUITE_TLS13 = 1 << 0,       /* 0x1301..0x1303 */
  CAPS_SUITE_ECDHE_ECDSA = 1 << 1, /* ECDHE-ECDSA with AES-GCM or ChaCha20 */
  CAPS_SUITE_ECDHE_RSA = 1 << 2,   /* ECDHE-RSA with AES-GCM or ChaCha20 */
};

struct client_caps {
  bool offers_tls13, offers_tls12;
  bool has_sigalgs;  /* signature_algorithms extension present */
  unsigned sigalgs;  /* CAPS_SIG_* */
  bool has_groups;   /* supported_groups extension present */
  unsigned groups;   /* CAPS_GROUP_* */
  unsigned suites;   /* CAPS_SUITE_* */
  bool status_request; /* asked for an OCSP staple */
  char sni[256];     /* host_name from server_name when it is a host name, or "" */
  /* When the host_name is not a host name: why (see clienthello_host_name_problem), and the
   * name as sent, pointing into the message given to clienthello_parse. */
  const char *sni_problem;
  const uint8_t *bad_sni;
  size_t bad_sni_len;
};

/* Why `name` is not a host name as server_name must carry one (RFC 6066 3): dot-separated
 * labels of 1 to 63 letters, digits, '-' or '_', 255 bytes at most, a final dot allowed. NULL
 * when it is one. */
const char *clienthello_host_name_problem(const uint8_t *name, size_t len);

/* Parses a ClientHello message body (after the 4-byte handshake header), as BoringSSL hands it
 * to the select-certificate callback. False when it is malformed; a server_name that is not a
 * host name does not make it malformed, it sets `sni_problem`. */
bool clienthello_parse(const uint8_t *body, size_t len, struct client_caps *out);

/* Parses TLS records holding one ClientHello (possibly over several records), as read off the
 * wire. Used by tests and the fuzz target. */
bool clienthello_parse_records(const uint8_t *data, size_t len, struct client_caps *out);

#endif
