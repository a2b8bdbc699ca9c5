/* What stapler reads from a certificate (names, OCSP URL) and how names find certificates. */
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "stapler/certinfo.h"
#include "stapler/certselect.h"
#include "stapler/certstore.h"
#include "stapler/util.h"
#include "testing.h"

#define C "ocsp/crafted/"

static X509 *pem(const char *rel) {
  size_t len;
  unsigned char *data = testing_read(rel, &len);
  BIO *bio = BIO_new_mem_buf(data, (ssize_t)len);
  X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  BIO_free(bio);
  free(data);
  if (!x) fprintf(stderr, "cannot parse %s\n", rel);
  return x;
}

/* certinfo_read's verdict on a file: NULL when usable. */
static const char *read_info(const char *rel, struct cert_info *info) {
  X509 *x = pem(rel);
  const char *err = certinfo_read(x, info);
  X509_free(x);
  return err;
}

/* RFC 6125 6.4.4: with a subjectAltName the CN is not a name, even when the SAN holds no DNS
 * name; and each reason for having no name gets its own message. */
static void test_cn_ignored_when_san_present(void) {
  struct cert_info info;
  const char *err = read_info(C "san-ip-only.pem", &info);
  CHECK(err != NULL);
  CHECK_EQ_INT(info.name_count, 0);
  CHECK_CONTAINS(err, "subjectAltName");
  CHECK_CONTAINS(err, "IP address");
  certinfo_free(&info);
  err = read_info(C "no-names.pem", &info);
  CHECK(err != NULL);
  CHECK_CONTAINS(err, "no subjectAltName");
  CHECK_CONTAINS(err, "CN");
  certinfo_free(&info);
  CHECK(read_info(C "leaf.pem", &info) == NULL);
  CHECK_EQ_INT(info.name_count, 1);
  CHECK_STR(info.names[0], "crafted.example");
  certinfo_free(&info);
}

/* Only http:// URLs are fetched; an https:// OCSP URL is kept aside to be named in messages. */
static void test_access_urls(void) {
  struct cert_info info;
  CHECK(read_info(C "leaf.pem", &info) == NULL);
  CHECK_STR(info.ocsp_url, "http://127.0.0.1:9/");
  CHECK_STR(info.ca_issuers_url, "http://127.0.0.1:9/ca.der");
  CHECK(info.ocsp_url_unusable == NULL);
  certinfo_free(&info);
  CHECK(read_info(C "https-ocsp.pem", &info) == NULL);
  CHECK(info.ocsp_url == NULL);
  CHECK_STR(info.ocsp_url_unusable, "https://127.0.0.1:9/");
  CHECK(info.ca_issuers_url == NULL);
  certinfo_free(&info);
  CHECK(read_info(C "leaf-no-ca-issuers.pem", &info) == NULL);
  CHECK(info.ca_issuers_url == NULL);
  CHECK(info.ocsp_url != NULL);
  certinfo_free(&info);
}

/* A certificate made up for the index and the selection rules: never served. */
static struct cert *fake(const char *label, enum key_kind kind, const char *name,
                         time_t not_before, time_t not_after) {
  struct cert *c = xcalloc(1, sizeof *c);
  c->label = xstrdup(label);
  c->info.kind = kind;
  c->info.key_bits = kind == KEY_KIND_RSA ? 2048 : 256;
  c->info.curve_nid = kind == KEY_KIND_ECDSA ? NID_X9_62_prime256v1 : 0;
  c->info.names = xcalloc(1, sizeof *c->info.names);
  c->info.names[0] = xstrdup(name);
  c->info.name_count = 1;
  c->info.not_before = not_before;
  c->info.not_after = not_after;
  return c;
}

static const struct client_caps kEcdsaOnly = {
    .offers_tls13 = true, .has_sigalgs = true, .sigalgs = CAPS_SIG_ECDSA_P256_SHA256,
    .has_groups = true, .groups = CAPS_GROUP_X25519, .suites = CAPS_SUITE_TLS13};
static const struct client_caps kBoth = {
    .offers_tls13 = true, .has_sigalgs = true,
    .sigalgs = CAPS_SIG_ECDSA_P256_SHA256 | CAPS_SIG_RSA_PSS_RSAE, .has_groups = true,
    .groups = CAPS_GROUP_X25519, .suites = CAPS_SUITE_TLS13};

static const struct cert *pick(const struct certstore *store, const char *sni,
                               const struct client_caps *caps, time_t now) {
  struct cert_candidates candidates;
  certstore_lookup(store, sni, &candidates);
  struct cert_choice choice;
  enum certselect_failure why;
  return certselect_choose(caps, TLS1_3_VERSION, &candidates, now, &choice, &why) ? choice.cert
                                                                                   : NULL;
}

/* An exact name with only an RSA certificate does not hide the wildcard's ECDSA one from a
 * client that can verify ECDSA alone; the exact name still comes first when it can serve. */
static void test_wildcard_behind_exact_name(void) {
  struct cert **certs = xcalloc(3, sizeof *certs);
  certs[0] = fake("default", KEY_KIND_ECDSA, "localhost", 0, 2000);
  certs[1] = fake("exact", KEY_KIND_RSA, "a.shadow.example", 0, 2000);
  certs[2] = fake("wildcard", KEY_KIND_ECDSA, "*.shadow.example", 0, 2000);
  struct strlist errors = {0};
  struct certstore *store = certstore_build(certs, 3, NULL, &errors);
  CHECK(store != NULL);
  struct cert_candidates candidates;
  certstore_lookup(store, "A.Shadow.Example.", &candidates);
  CHECK_EQ_INT(candidates.count, 2);
  CHECK_STR(pick(store, "a.shadow.example", &kEcdsaOnly, 1000)->label, "wildcard");
  CHECK_STR(pick(store, "a.shadow.example", &kBoth, 1000)->label, "exact");
  CHECK_STR(pick(store, "b.shadow.example", &kBoth, 1000)->label, "wildcard");
  CHECK_STR(pick(store, "nothing.example", &kBoth, 1000)->label, "default");
  CHECK_STR(pick(store, NULL, &kBoth, 1000)->label, "default");
  certstore_free(store);
  strlist_free(&errors);
}

/* Within validity first; an expired certificate only when nothing else can serve. */
static void test_valid_certificate_preferred(void) {
  struct cert **certs = xcalloc(4, sizeof *certs);
  certs[0] = fake("expired-ecdsa", KEY_KIND_ECDSA, "expiry.example", 0, 500);
  certs[1] = fake("valid-rsa", KEY_KIND_RSA, "expiry.example", 0, 2000);
  certs[2] = fake("early-ecdsa", KEY_KIND_ECDSA, "*.expiry.example", 1500, 3000);
  certs[3] = fake("valid-rsa-wild", KEY_KIND_RSA, "*.expiry.example", 0, 3000);
  struct strlist errors = {0};
  struct certstore *store = certstore_build(certs, 4, NULL, &errors);
  CHECK(store != NULL);
  CHECK_STR(pick(store, "expiry.example", &kBoth, 1000)->label, "valid-rsa");
  CHECK_STR(pick(store, "expiry.example", &kEcdsaOnly, 1000)->label, "expired-ecdsa");
  CHECK_STR(pick(store, "expiry.example", &kBoth, 400)->label, "expired-ecdsa"); /* not yet */
  CHECK_STR(pick(store, "x.expiry.example", &kBoth, 1000)->label, "valid-rsa-wild");
  CHECK_STR(pick(store, "x.expiry.example", &kBoth, 2000)->label, "early-ecdsa");
  certstore_free(store);
  strlist_free(&errors);
}

TEST_MAIN({
  RUN(test_cn_ignored_when_san_present);
  RUN(test_access_urls);
  RUN(test_wildcard_behind_exact_name);
  RUN(test_valid_certificate_preferred);
})
