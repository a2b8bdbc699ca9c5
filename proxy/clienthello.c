/* ClientHello parsing with CBS (RFC 8446 4.1.2). Unknown values (GREASE, new groups, new
 * signature schemes) are skipped, never an error: a client may always offer more than we know. */
#include "stapler/clienthello.h"

#include <openssl/bytestring.h>
#include <string.h>

#include "stapler/util.h"

#define EXT_SERVER_NAME 0
#define EXT_STATUS_REQUEST 5
#define EXT_SUPPORTED_GROUPS 10
#define EXT_SIGNATURE_ALGORITHMS 13
#define EXT_SUPPORTED_VERSIONS 43

static unsigned sigalg_flag(uint16_t v) {
  switch (v) {
  case 0x0403: return CAPS_SIG_ECDSA_P256_SHA256;
  case 0x0503: return CAPS_SIG_ECDSA_P384_SHA384;
  case 0x0603: return CAPS_SIG_ECDSA_P521_SHA512;
  case 0x0203: return CAPS_SIG_ECDSA_SHA1;
  case 0x0804: case 0x0805: case 0x0806: return CAPS_SIG_RSA_PSS_RSAE;
  case 0x0201: case 0x0401: case 0x0501: case 0x0601: return CAPS_SIG_RSA_PKCS1;
  default: return 0;
  }
}

static unsigned group_flag(uint16_t v) {
  switch (v) {
  case 29: return CAPS_GROUP_X25519;
  case 23: return CAPS_GROUP_P256;
  case 24: return CAPS_GROUP_P384;
  default: return 0;
  }
}

static unsigned suite_flag(uint16_t v) {
  switch (v) {
  case 0x1301: case 0x1302: case 0x1303: return CAPS_SUITE_TLS13;
  case 0xc02b: case 0xc02c: case 0xcca9: return CAPS_SUITE_ECDHE_ECDSA;
  case 0xc02f: case 0xc030: case 0xcca8: return CAPS_SUITE_ECDHE_RSA;
  default: return 0;
  }
}

/* A list of u16 values inside a length-prefixed vector, folded into flags. */
static bool parse_u16_list(CBS *ext, int prefix_bytes, unsigned (*flag)(uint16_t),
                           unsigned *out) {
  CBS list;
  bool ok = prefix_bytes == 1 ? CBS_get_u8_length_prefixed(ext, &list)
                              : CBS_get_u16_length_prefixed(ext, &list);
  if (!ok || CBS_len(ext) != 0 || CBS_len(&list) % 2 != 0) return false;
  while (CBS_len(&list) > 0) {
    uint16_t v;
    if (!CBS_get_u16(&list, &v)) return false;
    *out |= flag(v);
  }
  return true;
}

static bool parse_versions(CBS *ext, struct client_caps *out) {
  CBS list;
  if (!CBS_get_u8_length_prefixed(ext, &list) || CBS_len(ext) != 0 || CBS_len(&list) % 2)
    return false;
  while (CBS_len(&list) > 0) {
    uint16_t v;
    if (!CBS_get_u16(&list, &v)) return false;
    if (v == 0x0304) out->offers_tls13 = true;
    if (v == 0x0303) out->offers_tls12 = true;
  }
  return true;
}

const char *clienthello_host_name_problem(const uint8_t *name, size_t len) {
  if (len == 0) return "empty";
  if (len > 255) return "longer than 255 bytes";
  size_t label = 0;
  for (size_t i = 0; i < len; i++) {
    uint8_t c = name[i];
    if (c == '.') {
      if (label == 0) return "empty label";
      label = 0;
    } else if (c == 0) {
      return "NUL byte";
    } else if (c < 0x20 || c == 0x7f) {
      return "control byte";
    } else if (c == ' ') {
      return "space";
    } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_')) {
      return "byte other than a letter, digit, '-', '_' or '.'";
    } else if (++label > 63) {
      return "label longer than 63 bytes";
    }
  }
  return NULL;
}

/* The first host_name is the name (RFC 6066 allows no second one). */
static bool parse_server_name(CBS *ext, struct client_caps *out) {
  CBS list;
  if (!CBS_get_u16_length_prefixed(ext, &list) || CBS_len(ext) != 0) return false;
  bool seen = false;
  while (CBS_len(&list) > 0) {
    uint8_t type;
    CBS name;
    if (!CBS_get_u8(&list, &type) || !CBS_get_u16_length_prefixed(&list, &name)) return false;
    if (type != 0 || seen) continue;
    seen = true;
    out->sni_problem = clienthello_host_name_problem(CBS_data(&name), CBS_len(&name));
    if (out->sni_problem) {
      out->bad_sni = CBS_data(&name);
      out->bad_sni_len = CBS_len(&name);
      continue;
    }
    memcpy(out->sni, CBS_data(&name), CBS_len(&name));
    out->sni[CBS_len(&name)] = '\0';
  }
  return true;
}

static bool parse_extension(uint16_t type, CBS *body, struct client_caps *out) {
  switch (type) {
  case EXT_SERVER_NAME: return parse_server_name(body, out);
  case EXT_STATUS_REQUEST: {
    uint8_t status_type;
    if (!CBS_get_u8(body, &status_type)) return false;
    out->status_request = status_type == 1; /* ocsp */
    return true;
  }
  case EXT_SUPPORTED_GROUPS:
    out->has_groups = true;
    return parse_u16_list(body, 2, group_flag, &out->groups);
  case EXT_SIGNATURE_ALGORITHMS:
    out->has_sigalgs = true;
    return parse_u16_list(body, 2, sigalg_flag, &out->sigalgs);
  case EXT_SUPPORTED_VERSIONS: return parse_versions(body, out);
  default: return true;
  }
}

bool clienthello_parse(const uint8_t *data, size_t len, struct client_caps *out) {
  memset(out, 0, sizeof *out);
  CBS in, random, session_id, suites, compression, exts;
  uint16_t legacy_version;
  CBS_init(&in, data, len);
  if (!CBS_get_u16(&in, &legacy_version) || !CBS_get_bytes(&in, &random, 32) ||
      !CBS_get_u8_length_prefixed(&in, &session_id) || CBS_len(&session_id) > 32 ||
      !CBS_get_u16_length_prefixed(&in, &suites) || CBS_len(&suites) % 2 != 0 ||
      !CBS_get_u8_length_prefixed(&in, &compression) || CBS_len(&compression) == 0)
    return false;
  while (CBS_len(&suites) > 0) {
    uint16_t suite;
    if (!CBS_get_u16(&suites, &suite)) return false;
    out->suites |= suite_flag(suite);
  }
  bool has_versions_ext = false;
  if (CBS_len(&in) > 0) {
    if (!CBS_get_u16_length_prefixed(&in, &exts) || CBS_len(&in) != 0) return false;
    uint32_t seen[2] = {0, 0}; /* duplicate check for the extensions we read */
    while (CBS_len(&exts) > 0) {
      uint16_t type;
      CBS body;
      if (!CBS_get_u16(&exts, &type) || !CBS_get_u16_length_prefixed(&exts, &body)) return false;
      if (type < 64) {
        uint32_t bit = 1u << (type % 32);
        if (seen[type / 32] & bit) return false;
        seen[type / 32] |= bit;
      }
      if (type == EXT_SUPPORTED_VERSIONS) has_versions_ext = true;
      if (!parse_extension(type, &body, out)) return false;
    }
  }
  if (!has_versions_ext) out->offers_tls12 = legacy_version >= 0x0303;
  return true;
}

/* Joins the handshake-record payloads, then strips the 4-byte handshake header. */
bool clienthello_parse_records(const uint8_t *data, size_t len, struct client_caps *out) {
  uint8_t joined[1 << 16];
  size_t joined_len = 0;
  CBS in;
  CBS_init(&in, data, len);
  while (CBS_len(&in) > 0) {
    uint8_t type;
    uint16_t version;
    CBS payload;
    if (!CBS_get_u8(&in, &type) || type != 22 || !CBS_get_u16(&in, &version) ||
        !CBS_get_u16_length_prefixed(&in, &payload) || CBS_len(&payload) == 0 ||
        joined_len + CBS_len(&payload) > sizeof joined)
      return false;
    memcpy(joined + joined_len, CBS_data(&payload), CBS_len(&payload));
    joined_len += CBS_len(&payload);
  }
  CBS msg, body;
  uint8_t msg_type;
  CBS_init(&msg, joined, joined_len);
  if (!CBS_get_u8(&msg, &msg_type) || msg_type != 1 || !CBS_get_u24_length_prefixed(&msg, &body) ||
      CBS_len(&msg) != 0)
    return false;
  return clienthello_parse(CBS_data(&body), CBS_len(&body), out);
}
