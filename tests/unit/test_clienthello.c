/* ClientHello parsing and certificate choice against ClientHellos captured from real clients. */
#include <openssl/nid.h>
#include <openssl/ssl.h>

#include "stapler/certselect.h"
#include "stapler/clienthello.h"
#include "stapler/util.h"
#include "testing.h"

enum expect { WANT_ECDSA, WANT_RSA, WANT_NONE };

struct capture {
  const char *file;
  bool tls13, status;
  enum expect choice; /* for a server holding RSA-2048 and ECDSA P-256, TLS 1.2..1.3 */
};

static const struct capture kCaptures[] = {
    {"openssl-default.bin", true, false, WANT_ECDSA},
    {"openssl-tls12.bin", false, false, WANT_ECDSA},
    {"openssl-tls13.bin", true, false, WANT_ECDSA},
    {"openssl-sigalgs-ecdsa-sha256.bin", true, false, WANT_ECDSA},
    {"openssl-sigalgs-rsapss-sha256.bin", true, false, WANT_RSA},
    {"openssl-tls12-ecdhe-rsa.bin", false, false, WANT_RSA},
    /* Only ECDHE-ECDSA suites, and P-256 missing from supported_groups: neither certificate
     * can be used, so the handshake must fail (RFC 8422 5.1). */
    {"openssl-tls12-ecdhe-ecdsa-p384.bin", false, false, WANT_NONE},
    {"openssl-status.bin", true, true, WANT_ECDSA},
    {"openssl-tls13-ffdhe8192-maxfrag512.bin", true, false, WANT_ECDSA},
    {"curl-default.bin", true, false, WANT_ECDSA},
    {"curl-cert-status.bin", true, true, WANT_ECDSA},
    {"python3-default.bin", true, false, WANT_ECDSA},
    {"node-https-get.bin", true, false, WANT_ECDSA},
    {"bssl-default.bin", true, false, WANT_ECDSA},
    {"bssl-grease-ocsp.bin", true, true, WANT_ECDSA},
    {"chromium-headless.bin", true, true, WANT_ECDSA},
    {"wget-default.bin", true, true, WANT_ECDSA},
    {"gnutls-cli-default.bin", true, true, WANT_ECDSA},
    {"gnutls-cli-tls12.bin", false, true, WANT_ECDSA},
};

static struct cert rsa_cert = {.label = "rsa", .info = {.kind = KEY_KIND_RSA, .key_bits = 2048}};
static struct cert ecdsa_cert = {
    .label = "ecdsa", .info = {.kind = KEY_KIND_ECDSA, .curve_nid = NID_X9_62_prime256v1}};
static struct cert ecdsa384_cert = {
    .label = "ecdsa384", .info = {.kind = KEY_KIND_ECDSA, .curve_nid = NID_secp384r1}};

static const struct cert *choose(const struct client_caps *caps, uint16_t version,
                                 const struct cert_pair *pair, enum certselect_failure *why) {
  struct cert_choice choice;
  struct cert_candidates one = {.pairs = {pair}, .count = 1};
  return certselect_choose(caps, version, &one, 0, &choice, why) ? choice.cert : NULL;
}

static void load(const char *name, struct client_caps *caps) {
  char path[256];
  snprintf(path, sizeof path, "clienthello/%s", name);
  size_t len;
  unsigned char *data = testing_read(path, &len);
  bool ok = clienthello_parse_records(data, len, caps);
  if (!ok) fprintf(stderr, "cannot parse %s\n", name);
  CHECK(ok);
  free(data);
}

static void test_captures_parse_and_choose(void) {
  struct cert_pair pair = {.rsa = &rsa_cert, .ecdsa = &ecdsa_cert};
  for (size_t i = 0; i < sizeof kCaptures / sizeof kCaptures[0]; i++) {
    const struct capture *k = &kCaptures[i];
    struct client_caps caps;
    testing_current = k->file;
    load(k->file, &caps);
    CHECK_STR(caps.sni, "localhost");
    CHECK_EQ_INT(caps.offers_tls13, k->tls13);
    CHECK_EQ_INT(caps.offers_tls12, strstr(k->file, "tls13") == NULL); /* -tls1_3: 1.3 only */
    CHECK_EQ_INT(caps.status_request, k->status);
    uint16_t version = certselect_version(&caps, TLS1_2_VERSION, TLS1_3_VERSION);
    CHECK_EQ_INT(version, k->tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    enum certselect_failure why;
    const struct cert *c = choose(&caps, version, &pair, &why);
    const struct cert *want = k->choice == WANT_ECDSA ? &ecdsa_cert
                              : k->choice == WANT_RSA ? &rsa_cert
                                                      : NULL;
    CHECK(c == want);
    if (!want) CHECK_EQ_INT(why, CERTSELECT_NO_USABLE_CERT);
  }
}

static void test_single_certificate_names(void) {
  struct client_caps caps;
  enum certselect_failure why;
  /* RSA-only name: an ECDSA-only TLS 1.3 client cannot use it. */
  load("openssl-sigalgs-ecdsa-sha256.bin", &caps);
  struct cert_pair rsa_only = {.rsa = &rsa_cert};
  CHECK(choose(&caps, TLS1_3_VERSION, &rsa_only, &why) == NULL);
  CHECK_EQ_INT(why, CERTSELECT_NO_USABLE_CERT);
  /* ECDSA-only name: an RSA-PSS-only client cannot use it; a default client can. */
  struct cert_pair ecdsa_only = {.ecdsa = &ecdsa_cert};
  load("openssl-sigalgs-rsapss-sha256.bin", &caps);
  CHECK(choose(&caps, TLS1_3_VERSION, &ecdsa_only, &why) == NULL);
  load("openssl-default.bin", &caps);
  CHECK(choose(&caps, TLS1_3_VERSION, &ecdsa_only, &why) == &ecdsa_cert);
}

static void test_p384_certificate(void) {
  struct client_caps caps;
  enum certselect_failure why;
  struct cert_pair pair = {.rsa = &rsa_cert, .ecdsa = &ecdsa384_cert};
  /* The client that offers only ECDHE-ECDSA and P-384 can use a P-384 certificate. */
  load("openssl-tls12-ecdhe-ecdsa-p384.bin", &caps);
  CHECK(choose(&caps, TLS1_2_VERSION, &pair, &why) == &ecdsa384_cert);
  /* TLS 1.3 with only ecdsa_secp256r1_sha256: a P-384 key cannot sign that scheme. */
  load("openssl-sigalgs-ecdsa-sha256.bin", &caps);
  struct cert_pair only384 = {.ecdsa = &ecdsa384_cert};
  CHECK(choose(&caps, TLS1_3_VERSION, &only384, &why) == NULL);
}

static void test_version_limits(void) {
  struct client_caps caps;
  load("openssl-tls12.bin", &caps);
  CHECK_EQ_INT(certselect_version(&caps, TLS1_3_VERSION, TLS1_3_VERSION), 0);
  load("openssl-tls13.bin", &caps);
  CHECK_EQ_INT(certselect_version(&caps, TLS1_2_VERSION, TLS1_3_VERSION), TLS1_3_VERSION);
  CHECK_EQ_INT(certselect_version(&caps, TLS1_2_VERSION, TLS1_2_VERSION), 0);
}

static void test_malformed_inputs(void) {
  struct client_caps caps;
  size_t len;
  unsigned char *data = testing_read("clienthello/openssl-default.bin", &len);
  /* Every truncation of the message must be refused, never read past the end. */
  for (size_t cut = 5; cut < len; cut++) CHECK(!clienthello_parse_records(data, cut, &caps));
  /* A wrong record type or handshake type. */
  data[0] = 23;
  CHECK(!clienthello_parse_records(data, len, &caps));
  data[0] = 22;
  data[5] = 2;
  CHECK(!clienthello_parse_records(data, len, &caps));
  free(data);
  /* A body with a duplicated extension is malformed (RFC 8446 4.2). */
  static const uint8_t dup[] = {
      0x03, 0x03, /* legacy_version */
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0x00,                   /* session id */
      0x00, 0x02, 0x13, 0x01, /* suites */
      0x01, 0x00,             /* compression */
      0x00, 0x08, 0x00, 0x05, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, /* status_request twice */
  };
  CHECK(!clienthello_parse(dup, sizeof dup, &caps));
}

/* A ClientHello body whose server_name list holds `name`. */
static size_t hello_with_name(uint8_t *out, const char *name, size_t name_len) {
  static const uint8_t head[] = {0x03, 0x03, [34] = 0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00};
  size_t n = sizeof head;
  memcpy(out, head, n);
  size_t ext_len = 4 + 5 + name_len;
  const uint8_t exts[] = {(uint8_t)(ext_len >> 8), (uint8_t)ext_len, 0x00, 0x00, /* server_name */
                          (uint8_t)((name_len + 5) >> 8), (uint8_t)(name_len + 5),
                          (uint8_t)((name_len + 3) >> 8), (uint8_t)(name_len + 3), /* the list */
                          0x00, (uint8_t)(name_len >> 8), (uint8_t)name_len};   /* host_name */
  memcpy(out + n, exts, sizeof exts);
  n += sizeof exts;
  memcpy(out + n, name, name_len);
  return n + name_len;
}

static void test_server_name_must_be_a_host_name(void) {
  static const struct {
    const char *name;
    size_t len;
    const char *problem; /* NULL: a host name */
  } cases[] = {
      {"example.com", 11, NULL},
      {"Example.COM.", 12, NULL},
      {"my_host-1.example", 17, NULL},
      {"localhost", 9, NULL},
      {"", 0, "empty"},
      {"a..b", 4, "empty label"},
      {".example", 8, "empty label"},
      {".", 1, "empty label"},
      {"a b", 3, "space"},
      {"evil\n2026", 9, "control byte"},
      {"a\x7f", 2, "control byte"},
      {"a\0b", 3, "NUL byte"},
      {"caf\xc3\xa9", 5, "byte other than a letter, digit, '-', '_' or '.'"},
      {"*.example", 9, "byte other than a letter, digit, '-', '_' or '.'"},
      {"[::1]", 5, "byte other than a letter, digit, '-', '_' or '.'"},
  };
  uint8_t body[512];
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    testing_current = cases[i].name;
    const uint8_t *name = (const uint8_t *)cases[i].name;
    const char *problem = clienthello_host_name_problem(name, cases[i].len);
    CHECK(cases[i].problem ? problem && !strcmp(problem, cases[i].problem) : !problem);
    /* In a ClientHello, a bad name is a refusal to report, not a malformed message. */
    struct client_caps caps;
    CHECK(clienthello_parse(body, hello_with_name(body, cases[i].name, cases[i].len), &caps));
    CHECK(caps.sni_problem == problem);
    if (problem) {
      CHECK_STR(caps.sni, "");
      CHECK_EQ_INT(caps.bad_sni_len, cases[i].len);
      CHECK(caps.bad_sni && !memcmp(caps.bad_sni, cases[i].name, cases[i].len));
    } else {
      CHECK_EQ_INT(strlen(caps.sni), cases[i].len);
    }
  }
  char label[80], name[300];
  memset(label, 'a', sizeof label);
  CHECK(!clienthello_host_name_problem((const uint8_t *)label, 63));
  CHECK_STR(clienthello_host_name_problem((const uint8_t *)label, 64),
            "label longer than 63 bytes");
  for (size_t i = 0; i < sizeof name; i++) name[i] = i % 64 == 63 ? '.' : 'a';
  CHECK(!clienthello_host_name_problem((const uint8_t *)name, 255));
  CHECK_STR(clienthello_host_name_problem((const uint8_t *)name, 256), "longer than 255 bytes");
  struct client_caps caps;
  CHECK(clienthello_parse(body, hello_with_name(body, name, 256), &caps));
  CHECK_STR(caps.sni_problem, "longer than 255 bytes");
}

TEST_MAIN({
  RUN(test_captures_parse_and_choose);
  RUN(test_single_certificate_names);
  RUN(test_p384_certificate);
  RUN(test_version_limits);
  RUN(test_malformed_inputs);
  RUN(test_server_name_must_be_a_host_name);
})
