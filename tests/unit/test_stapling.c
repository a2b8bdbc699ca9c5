/* The OCSP client's pieces: request building, verification of openssl-made answers and their
 * hand-corrupted variants, the refresh schedule, the OCSP policies, the cache, and the
 * deferred freeing of replaced staples. */
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stapler/cert.h"
#include "stapler/certselect.h"
#include "stapler/issuer.h"
#include "stapler/ocsp_cache.h"
#include "stapler/ocsp_fetch.h"
#include "stapler/ocsp_request.h"
#include "stapler/ocsp_schedule.h"
#include "stapler/ocsp_verify.h"
#include "stapler/util.h"
#include "testing.h"

#define V "ocsp/stapler/"

static X509 *pem(const char *rel) {
  size_t len;
  unsigned char *data = testing_read(rel, &len);
  BIO *bio = BIO_new_mem_buf(data, (ssize_t)len);
  X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  BIO_free(bio);
  free(data);
  return x;
}

static time_t own_time(const unsigned char *der, size_t len) {
  struct ocsp_parsed p;
  return ocsp_parse_response(der, len, &p) == NULL ? p.singles[0].this_update + 60 : 0;
}

static enum ocsp_error verify_file(const char *name, const char *leaf_name,
                                   struct ocsp_result *r) {
  char path[128], leaf_path[128];
  snprintf(path, sizeof path, V "%s", name);
  snprintf(leaf_path, sizeof leaf_path, V "%s", leaf_name);
  size_t len;
  unsigned char *der = testing_read(path, &len);
  X509 *leaf = pem(leaf_path), *ca = pem(V "ca.pem");
  enum ocsp_error err = ocsp_verify(der, len, leaf, ca, own_time(der, len), r);
  X509_free(leaf);
  X509_free(ca);
  free(der);
  return err;
}

static void test_request_matches_openssl(void) {
  X509 *leaf = pem(V "leaf.pem"), *ca = pem(V "ca.pem");
  uint8_t *der;
  size_t len, want_len;
  CHECK(ocsp_request_build(leaf, ca, &der, &len));
  unsigned char *want = testing_read(V "request-sha1.der", &want_len);
  CHECK_EQ_INT(len, want_len);
  CHECK(len == want_len && memcmp(der, want, len) == 0);
  char *url = ocsp_request_get_url("http://ocsp.example/", der, len);
  CHECK(url != NULL);
  CHECK(strncmp(url, "http://ocsp.example/ME", 22) == 0); /* base64 of a SEQUENCE */
  CHECK(strchr(url + 20, '/') == NULL && strchr(url + 20, '+') == NULL &&
        strchr(url + 20, '=') == NULL);
  free(url);
  url = ocsp_request_get_url("http://ocsp.example/path", der, len);
  CHECK(strncmp(url, "http://ocsp.example/path/ME", 27) == 0);
  free(url);
  uint8_t big[400] = {0};
  CHECK(ocsp_request_get_url("http://x/", big, sizeof big) == NULL); /* too long: POST */
  /* The limit counts the whole URL: a long responder path also means POST. */
  char long_url[200];
  snprintf(long_url, sizeof long_url, "http://ocsp.example/%0150d/", 0);
  CHECK(ocsp_request_get_url(long_url, der, len) == NULL);
  url = ocsp_request_get_url("http://ocsp.example/", der, len);
  CHECK(url && strlen(url) <= OCSP_GET_MAX);
  free(url);
  free(want);
  free(der);
  X509_free(leaf);
  X509_free(ca);
}

static void test_openssl_made_answers(void) {
  struct ocsp_result r;
  CHECK_EQ_INT(verify_file("good-delegated.der", "leaf.pem", &r), OCSP_OK);
  CHECK_EQ_INT(r.status, OCSP_STATUS_GOOD);
  CHECK(r.delegated);
  CHECK_EQ_INT(verify_file("good-issuer.der", "leaf.pem", &r), OCSP_OK);
  CHECK(!r.delegated);
  CHECK_EQ_INT(verify_file("good-sha256-certid.der", "leaf.pem", &r), OCSP_OK);
  CHECK_EQ_INT(verify_file("good-rsa-pss.der", "leaf.pem", &r), OCSP_OK);
  CHECK_EQ_INT(verify_file("good-sha384-sig.der", "leaf.pem", &r), OCSP_OK);
  CHECK_EQ_INT(verify_file("by-key.der", "leaf.pem", &r), OCSP_OK);
  CHECK_EQ_INT(verify_file("revoked.der", "revoked.pem", &r), OCSP_OK);
  CHECK_EQ_INT(r.status, OCSP_STATUS_REVOKED);
  CHECK_EQ_INT(r.revocation_reason, 1); /* keyCompromise */
  CHECK_EQ_INT(verify_file("unknown.der", "unknown.pem", &r), OCSP_OK);
  CHECK_EQ_INT(r.status, OCSP_STATUS_UNKNOWN);
  CHECK_EQ_INT(verify_file("noeku.der", "leaf.pem", &r), OCSP_ERR_UNAUTHORIZED);
  CHECK_CONTAINS(r.detail, "OCSPSigning");
  /* Signed by another CA, whose certificate comes along: not authorised by our issuer. */
  CHECK_EQ_INT(verify_file("stranger.der", "leaf.pem", &r), OCSP_ERR_UNAUTHORIZED);
  CHECK_EQ_INT(verify_file("no-next-update.der", "leaf.pem", &r), OCSP_ERR_NO_NEXT_UPDATE);
  /* A genuine answer, for another certificate of the same CA. */
  CHECK_EQ_INT(verify_file("revoked.der", "leaf.pem", &r), OCSP_ERR_WRONG_CERT);
}

/* Corrupts a copy of good-delegated.der with `edit` and expects `want`. */
static void corrupted(void (*edit)(unsigned char *der, size_t *len), enum ocsp_error want,
                      const char *what) {
  size_t len;
  unsigned char *orig = testing_read(V "good-delegated.der", &len);
  unsigned char *der = malloc(len + 16);
  memcpy(der, orig, len);
  time_t now = own_time(orig, len);
  edit(der, &len);
  X509 *leaf = pem(V "leaf.pem"), *ca = pem(V "ca.pem");
  struct ocsp_result r;
  enum ocsp_error got = ocsp_verify(der, len, leaf, ca, now, &r);
  if (got != want)
    fprintf(stderr, "  %s: got %s (%s), want %s\n", what, ocsp_error_name(got), r.detail,
            ocsp_error_name(want));
  CHECK_EQ_INT(got, want);
  X509_free(leaf);
  X509_free(ca);
  free(der);
  free(orig);
}

static size_t find(const unsigned char *der, size_t len, const unsigned char *pat, size_t n) {
  for (size_t i = 0; i + n <= len; i++)
    if (!memcmp(der + i, pat, n)) return i;
  return 0;
}

static void truncate_half(unsigned char *d, size_t *len) { *len /= 2; }
static void trailing_byte(unsigned char *d, size_t *len) { d[(*len)++] = 0; }
static void bad_outer_tag(unsigned char *d, size_t *len) { d[0] = 0x31; }
static void longer_outer_length(unsigned char *d, size_t *len) { d[3]++; }
static void flip_signature(unsigned char *d, size_t *len) {
  struct ocsp_parsed p;
  if (ocsp_parse_response(d, *len, &p) == NULL) d[CBS_data(&p.signature) - d + 8] ^= 0x40;
}
/* The included responder certificate's own signature (its last bytes). */
static void flip_responder_cert(unsigned char *d, size_t *len) { d[*len - 2] ^= 0x40; }
/* The CertID's serial 0x1001 is "02 02 10 01": turn it into 0x1002 (inside the signed part). */
static void wrong_serial(unsigned char *d, size_t *len) {
  static const unsigned char serial[] = {0x02, 0x02, 0x10, 0x01};
  d[find(d, *len, serial, 4) + 3] = 0x02;
}
/* The first OCTET STRING of 20 bytes is the issuer name hash. */
static void wrong_issuer_hash(unsigned char *d, size_t *len) {
  static const unsigned char octets[] = {0x04, 0x14};
  d[find(d, *len, octets, 2) + 5] ^= 0xff;
}
static void unsuccessful_status(unsigned char *d, size_t *len) {
  static const unsigned char status[] = {0x0a, 0x01, 0x00};
  d[find(d, *len, status, 3) + 2] = 3; /* tryLater */
}

static void test_hand_corrupted(void) {
  corrupted(truncate_half, OCSP_ERR_MALFORMED, "truncated");
  corrupted(trailing_byte, OCSP_ERR_MALFORMED, "trailing byte");
  corrupted(bad_outer_tag, OCSP_ERR_MALFORMED, "bad tag");
  corrupted(longer_outer_length, OCSP_ERR_MALFORMED, "wrong length");
  corrupted(flip_signature, OCSP_ERR_SIGNATURE, "bad signature");
  corrupted(flip_responder_cert, OCSP_ERR_UNAUTHORIZED, "responder certificate tampered");
  corrupted(wrong_serial, OCSP_ERR_SIGNATURE, "serial edited after signing");
  corrupted(wrong_issuer_hash, OCSP_ERR_SIGNATURE, "issuer hash edited after signing");
  corrupted(unsuccessful_status, OCSP_ERR_RESPONSE_STATUS, "tryLater");
}

static void test_expired(void) {
  size_t len;
  unsigned char *der = testing_read(V "good-delegated.der", &len);
  X509 *leaf = pem(V "leaf.pem"), *ca = pem(V "ca.pem");
  struct ocsp_parsed p;
  CHECK(ocsp_parse_response(der, len, &p) == NULL);
  struct ocsp_result r;
  CHECK_EQ_INT(ocsp_verify(der, len, leaf, ca, p.singles[0].next_update + 1, &r),
               OCSP_ERR_EXPIRED);
  /* (thisUpdate in the future is checked with OpenSSL's vectors in test_ocsp.c: here the
   * responder certificate is as young as the answer.) */
  free(der);
  X509_free(leaf);
  X509_free(ca);
}

static void test_schedule(void) {
  const time_t t0 = 1000000, day = 86400;
  struct ocsp_schedule_in in = {.have_staple = false};
  CHECK_EQ_INT(ocsp_schedule_next(&in, t0, 12345), t0); /* nothing yet: now */
  in = (struct ocsp_schedule_in){.have_staple = true, .this_update = t0, .next_update = t0 + 7 * day};
  for (uint32_t rnd = 0; rnd < 2000; rnd += 37) { /* half-way, within 5% of the span */
    time_t at = ocsp_schedule_next(&in, t0 + 60, rnd);
    CHECK(at >= t0 + 7 * day / 2 - 7 * day / 20 && at <= t0 + 7 * day / 2 + 7 * day / 20);
  }
  /* Past the half-way point (a restart with an old cached staple): soon, spread over 5 s. */
  time_t late = t0 + 5 * day;
  time_t at = ocsp_schedule_next(&in, late, 99);
  CHECK(at >= late && at <= late + 5);
  /* Failures back off 1, 2, 4 ... minutes, up to an hour. */
  in.failures = 1;
  at = ocsp_schedule_next(&in, late, 0);
  CHECK(at - late >= 54 && at - late <= 66);
  in.failures = 3;
  at = ocsp_schedule_next(&in, late, 0);
  CHECK(at - late >= 216 && at - late <= 264);
  in.failures = 30;
  at = ocsp_schedule_next(&in, late, 0);
  CHECK(at - late >= 3240 && at - late <= 3960);
  /* ... but always try again before the staple expires. */
  time_t near_end = t0 + 7 * day - 600;
  at = ocsp_schedule_next(&in, near_end, 0);
  CHECK(at < t0 + 7 * day && at >= near_end + 10);
  at = ocsp_schedule_next(&in, t0 + 7 * day - 15, 0);
  CHECK_EQ_INT(at, t0 + 7 * day - 15 + 10);
  /* Expired staple and failures: plain backoff. */
  at = ocsp_schedule_next(&in, t0 + 8 * day, 0);
  CHECK(at - (t0 + 8 * day) >= 3240);
}

static struct staple *make_staple(time_t this_update, time_t next_update) {
  struct ocsp_result r = {.status = OCSP_STATUS_GOOD, .this_update = this_update,
                          .next_update = next_update, .valid_until = next_update};
  static const uint8_t der[] = {0x30, 0x03, 0x0a, 0x01, 0x00};
  return staple_new(der, sizeof der, &r);
}

static void test_policies(void) {
  struct client_caps asks = {.status_request = true}, silent = {.status_request = false};
  struct cert c = {.label = "c"};
  struct staple *fresh = make_staple(100, 1000);
  c.policy = OCSP_POLICY_LENIENT;
  CHECK(certselect_policy_allows(&c, NULL, &asks, 500));
  CHECK(certselect_policy_allows(&c, fresh, &asks, 5000));
  c.policy = OCSP_POLICY_STRICT;
  CHECK(certselect_policy_allows(&c, NULL, &asks, 500));     /* never had one: served */
  CHECK(certselect_policy_allows(&c, fresh, &asks, 999));
  CHECK(!certselect_policy_allows(&c, fresh, &asks, 1000));  /* expired: not served */
  CHECK(certselect_policy_allows(&c, fresh, &silent, 1000)); /* unless not asked */
  c.policy = OCSP_POLICY_MUST_STAPLE;
  CHECK(!certselect_policy_allows(&c, NULL, &asks, 500));
  CHECK(certselect_policy_allows(&c, fresh, &asks, 500));
  CHECK(!certselect_policy_allows(&c, fresh, &asks, 1000));
  CHECK(certselect_policy_allows(&c, NULL, &silent, 500));
  staple_unref(fresh);
}

/* With dual certificates, a policy that rules out one falls back to the other. */
static void test_policy_fallback(void) {
  struct client_caps caps = {.offers_tls13 = true, .has_sigalgs = true,
                             .sigalgs = CAPS_SIG_ECDSA_P256_SHA256 | CAPS_SIG_RSA_PSS_RSAE,
                             .has_groups = true, .groups = CAPS_GROUP_X25519,
                             .suites = CAPS_SUITE_TLS13, .status_request = true};
  struct cert ecdsa = {.label = "ecdsa", .policy = OCSP_POLICY_MUST_STAPLE,
                       .info = {.kind = KEY_KIND_ECDSA, .curve_nid = NID_X9_62_prime256v1}};
  struct cert rsa = {.label = "rsa", .policy = OCSP_POLICY_MUST_STAPLE,
                     .info = {.kind = KEY_KIND_RSA, .key_bits = 2048}};
  struct cert_pair pair = {.rsa = &rsa, .ecdsa = &ecdsa};
  struct cert_candidates candidates = {.pairs = {&pair}, .count = 1};
  atomic_store(&rsa.staple, make_staple(100, 1000));
  struct cert_choice choice;
  enum certselect_failure why;
  CHECK(certselect_choose(&caps, TLS1_3_VERSION, &candidates, 500, &choice, &why));
  CHECK(choice.cert == &rsa);
  CHECK(choice.staple == cert_staple(&rsa));
  CHECK(!certselect_choose(&caps, TLS1_3_VERSION, &candidates, 1000, &choice, &why));
  CHECK_EQ_INT(why, CERTSELECT_NO_VALID_STAPLE);
  caps.status_request = false; /* not asked: ECDSA, and nothing to staple */
  CHECK(certselect_choose(&caps, TLS1_3_VERSION, &candidates, 1000, &choice, &why));
  CHECK(choice.cert == &ecdsa && choice.staple == NULL);
  staple_unref(cert_staple(&rsa));
}

static void test_cache_roundtrip(void) {
  char dir[] = "/tmp/stapler-cache-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char nested[128], err[256];
  snprintf(nested, sizeof nested, "%s/a/b", dir);
  CHECK(ocsp_cache_prepare(nested, err, sizeof err));
  struct cert c = {.label = "c"};
  memset(c.fingerprint, 0xab, sizeof c.fingerprint);
  uint8_t *der;
  size_t len;
  CHECK(!ocsp_cache_load(nested, &c, &der, &len));
  CHECK(ocsp_cache_store(nested, &c, (const uint8_t *)"first", 5, err, sizeof err));
  CHECK(ocsp_cache_store(nested, &c, (const uint8_t *)"second!", 7, err, sizeof err));
  CHECK(ocsp_cache_load(nested, &c, &der, &len));
  CHECK(len == 7 && !memcmp(der, "second!", 7));
  free(der);
  char *path = ocsp_cache_path(nested, &c);
  CHECK_CONTAINS(path, "/abababab");
  unlink(path);
  free(path);
  snprintf(err, sizeof err, "rm -rf %s", dir);
  CHECK(system(err) == 0);
  CHECK(!ocsp_cache_prepare("/proc/stapler-cannot-be-here", err, sizeof err));
}

static void test_url_parse(void) {
  char host[256], path[256];
  uint16_t port;
  CHECK_EQ_INT(ocsp_url_parse("http://ocsp.example.net", host, sizeof host, &port, path,
                              sizeof path), 0);
  CHECK_STR(host, "ocsp.example.net");
  CHECK_EQ_INT(port, 80);
  CHECK_STR(path, "/");
  CHECK_EQ_INT(ocsp_url_parse("http://[::1]:8080/a/b?c", host, sizeof host, &port, path,
                              sizeof path), 0);
  CHECK_STR(host, "::1");
  CHECK_EQ_INT(port, 8080);
  CHECK_STR(path, "/a/b?c");
  CHECK_EQ_INT(ocsp_url_parse("HTTP://X:1/", host, sizeof host, &port, path, sizeof path), 0);
  CHECK(ocsp_url_parse("https://x/", host, sizeof host, &port, path, sizeof path) != 0);
  CHECK(ocsp_url_parse("http://x:0/", host, sizeof host, &port, path, sizeof path) != 0);
  CHECK(ocsp_url_parse("http://x:99999/", host, sizeof host, &port, path, sizeof path) != 0);
  CHECK(ocsp_url_parse("http://:80/", host, sizeof host, &port, path, sizeof path) != 0);
  CHECK(ocsp_url_parse("http://x/a b", host, sizeof host, &port, path, sizeof path) != 0);
  CHECK(ocsp_url_parse("http://x:80a/", host, sizeof host, &port, path, sizeof path) != 0);
}

static enum ocsp_answer_state answer(const char *text, size_t len, bool eof, bool bytewise,
                                     char *error, size_t *body_len) {
  struct ocsp_answer a;
  ocsp_answer_init(&a);
  enum ocsp_answer_state st = OCSP_ANSWER_MORE;
  for (size_t off = 0; off < len && st == OCSP_ANSWER_MORE;) {
    size_t n = bytewise ? 1 : len - off;
    st = ocsp_answer_feed(&a, (const uint8_t *)text + off, n, error, 200);
    off += n;
  }
  if (st == OCSP_ANSWER_MORE && eof) st = ocsp_answer_eof(&a, error, 200);
  *body_len = a.body_len;
  ocsp_answer_free(&a);
  return st;
}

static void test_responder_answers(void) {
  char error[200];
  size_t body;
  const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nDER!";
  CHECK_EQ_INT(answer(ok, strlen(ok), false, false, error, &body), OCSP_ANSWER_DONE);
  CHECK_EQ_INT(body, 4);
  CHECK_EQ_INT(answer(ok, strlen(ok), false, true, error, &body), OCSP_ANSWER_DONE);
  const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n"
                        "0\r\n\r\n";
  CHECK_EQ_INT(answer(chunked, strlen(chunked), false, false, error, &body), OCSP_ANSWER_DONE);
  CHECK_EQ_INT(body, 2);
  const char *close = "HTTP/1.0 200 OK\r\n\r\nuntil close";
  CHECK_EQ_INT(answer(close, strlen(close), false, false, error, &body), OCSP_ANSWER_MORE);
  CHECK_EQ_INT(answer(close, strlen(close), true, false, error, &body), OCSP_ANSWER_DONE);
  CHECK_EQ_INT(body, 11);
  const char *e500 = "HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\nbad";
  CHECK_EQ_INT(answer(e500, strlen(e500), false, false, error, &body), OCSP_ANSWER_FAILED);
  CHECK_CONTAINS(error, "HTTP 500");
  const char *redirect = "HTTP/1.1 301 Moved\r\nLocation: http://x/\r\nContent-Length: 0\r\n\r\n";
  CHECK_EQ_INT(answer(redirect, strlen(redirect), false, false, error, &body), OCSP_ANSWER_FAILED);
  CHECK_CONTAINS(error, "redirect");
  const char *empty = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  CHECK_EQ_INT(answer(empty, strlen(empty), false, false, error, &body), OCSP_ANSWER_FAILED);
  const char *garbage = "\x30\x82\x01\x00 not http";
  CHECK_EQ_INT(answer(garbage, strlen(garbage), false, false, error, &body), OCSP_ANSWER_FAILED);
  CHECK_CONTAINS(error, "did not speak HTTP");
  const char *cut = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
  CHECK_EQ_INT(answer(cut, strlen(cut), true, false, error, &body), OCSP_ANSWER_FAILED);
  CHECK_CONTAINS(error, "before a complete answer");
  static char big[OCSP_FETCH_MAX_BODY + 200];
  int n = snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
                   OCSP_FETCH_MAX_BODY + 1);
  memset(big + n, 'x', OCSP_FETCH_MAX_BODY + 1);
  CHECK_EQ_INT(answer(big, (size_t)n + OCSP_FETCH_MAX_BODY + 1, false, false, error, &body),
               OCSP_ANSWER_FAILED);
  CHECK_CONTAINS(error, "larger than");
}

/* A certificate as cert_load makes it, from a leaf and its issuer (no key: never served). */
static struct cert *cert_of(const char *leaf, const char *issuer) {
  struct cert *c = xcalloc(1, sizeof *c);
  c->label = xstrdup(leaf);
  c->leaf = pem(leaf);
  c->issuer = pem(issuer);
  CHECK(certinfo_read(c->leaf, &c->info) == NULL);
  c->policy = OCSP_POLICY_LENIENT;
  return c;
}

static const struct client_caps kAsksEcdsa13 = {
    .offers_tls13 = true, .has_sigalgs = true, .sigalgs = CAPS_SIG_ECDSA_P256_SHA256,
    .has_groups = true, .groups = CAPS_GROUP_X25519, .suites = CAPS_SUITE_TLS13,
    .status_request = true};

/* The answer's nextUpdate is a week away but its delegated signer expires after a day: a
 * client checking the signer would refuse the staple from then on, so it is not sent. */
static void test_staple_ends_with_its_delegated_signer(void) {
  struct cert *c = cert_of("ocsp/crafted/leaf.pem", "ocsp/crafted/ca.pem");
  X509 *signer = pem("ocsp/crafted/resp-short.pem");
  time_t signer_not_after;
  CHECK(certinfo_time(X509_get0_notAfter(signer), &signer_not_after));
  size_t len;
  unsigned char *der = testing_read("ocsp/crafted/good-short-signer.der", &len);
  struct ocsp_result r;
  CHECK_EQ_INT(cert_set_staple_der(c, der, len, own_time(der, len), &r), OCSP_OK);
  CHECK(r.next_update > signer_not_after + 86400);
  struct cert_pair pair = {.ecdsa = c};
  struct cert_candidates candidates = {.pairs = {&pair}, .count = 1};
  struct cert_choice choice;
  enum certselect_failure why;
  CHECK(certselect_choose(&kAsksEcdsa13, TLS1_3_VERSION, &candidates, signer_not_after - 10,
                          &choice, &why));
  CHECK(choice.staple != NULL);
  CHECK(certselect_choose(&kAsksEcdsa13, TLS1_3_VERSION, &candidates, signer_not_after + 1,
                          &choice, &why));
  CHECK(choice.cert == c && choice.staple == NULL);
  c->policy = OCSP_POLICY_STRICT; /* an expired staple, as far as the policy goes */
  CHECK(!certselect_choose(&kAsksEcdsa13, TLS1_3_VERSION, &candidates, signer_not_after + 1,
                           &choice, &why));
  free(der);
  X509_free(signer);
  cert_free(c);
}

/* "unknown" verifies, but some browsers fail hard on it: never made the staple. */
static void test_unknown_answer_is_not_made_the_staple(void) {
  struct cert *c = cert_of(V "unknown.pem", V "ca.pem");
  size_t len;
  unsigned char *der = testing_read(V "unknown.der", &len);
  struct ocsp_result r;
  CHECK(cert_set_staple_der(c, der, len, own_time(der, len), &r) != OCSP_OK);
  CHECK(cert_staple(c) == NULL);
  free(der);
  cert_free(c);
}

/* 100 Continue and 103 Early Hints come before the real answer (RFC 9110 15.2). */
static void test_interim_responses_skipped(void) {
  char error[200];
  size_t body;
  const char *cont = "HTTP/1.1 100 Continue\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nDER!";
  CHECK_EQ_INT(answer(cont, strlen(cont), false, false, error, &body), OCSP_ANSWER_DONE);
  CHECK_EQ_INT(body, 4);
  CHECK_EQ_INT(answer(cont, strlen(cont), false, true, error, &body), OCSP_ANSWER_DONE);
  CHECK_EQ_INT(body, 4);
  const char *hints = "HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
                      "HTTP/1.1 100 Continue\r\n\r\n"
                      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
  CHECK_EQ_INT(answer(hints, strlen(hints), false, false, error, &body), OCSP_ANSWER_DONE);
  CHECK_EQ_INT(body, 3);
  const char *only = "HTTP/1.1 100 Continue\r\n\r\n";
  CHECK_EQ_INT(answer(only, strlen(only), true, false, error, &body), OCSP_ANSWER_FAILED);
  CHECK_CONTAINS(error, "before a complete answer");
  const char *switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n";
  CHECK_EQ_INT(answer(switching, strlen(switching), true, false, error, &body),
               OCSP_ANSWER_FAILED);
}

/* Containers sharing a cache volume all run stapler as PID 1: a temporary file named after
 * the PID would be another instance's half-written file. */
static void test_cache_temporary_file_is_private(void) {
  char dir[] = "/tmp/stapler-cache-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char err[256], other[600];
  struct cert c = {.label = "c"};
  memset(c.fingerprint, 0xcd, sizeof c.fingerprint);
  char *path = ocsp_cache_path(dir, &c);
  snprintf(other, sizeof other, "%s.%ld.tmp", path, (long)getpid());
  FILE *f = fopen(other, "w");
  CHECK(f != NULL);
  fputs("another instance, mid-write", f);
  fclose(f);
  CHECK(ocsp_cache_store(dir, &c, (const uint8_t *)"mine", 4, err, sizeof err));
  uint8_t *data = NULL;
  size_t len = 0;
  CHECK(!read_file(other, &data, &len, 1024));
  CHECK(len == 27 && !memcmp(data, "another instance, mid-write", 27));
  free(data);
  data = NULL;
  CHECK(ocsp_cache_load(dir, &c, &data, &len));
  CHECK(len == 4 && !memcmp(data, "mine", 4));
  free(data);
  free(path);
  snprintf(err, sizeof err, "rm -rf %s", dir);
  CHECK(system(err) == 0);
}

/* The responder sent the staple in use again: half-way to its end, not at once. */
static void test_schedule_after_the_same_answer(void) {
  const time_t t0 = 1000000, hour = 3600;
  struct ocsp_schedule_in in = {.have_staple = true, .this_update = t0,
                                .next_update = t0 + 24 * hour, .unchanged = true};
  time_t now = t0 + 14 * hour;
  for (uint32_t rnd = 0; rnd < 2000; rnd += 37) {
    time_t at = ocsp_schedule_next(&in, now, rnd);
    CHECK(at >= now + 5 * hour - 30 * 60 && at <= now + 5 * hour + 30 * 60);
  }
  CHECK_EQ_INT(ocsp_schedule_next(&in, t0 + 24 * hour - 8, 7), t0 + 24 * hour - 8 + 10);
  in.unchanged = false; /* a new answer: half-way through its own span, long past here */
  time_t at = ocsp_schedule_next(&in, now, 99);
  CHECK(at >= now && at <= now + 5);
}

static void test_content_type_is_read(void) {
  char error[200];
  struct ocsp_answer a;
  ocsp_answer_init(&a);
  const char *text = "HTTP/1.1 103 Early Hints\r\nContent-Type: text/plain\r\n\r\n"
                     "HTTP/1.1 200 OK\r\ncontent-TYPE: Application/OCSP-Response; q=1\r\n"
                     "Content-Length: 1\r\n\r\nx";
  for (size_t i = 0; text[i]; i++) /* a byte at a time: names and values arrive in pieces */
    if (ocsp_answer_feed(&a, (const uint8_t *)text + i, 1, error, sizeof error) !=
        OCSP_ANSWER_MORE)
      break;
  CHECK(a.complete);
  CHECK_STR(a.content_type, "Application/OCSP-Response; q=1");
  CHECK(ocsp_media_type_is(a.content_type, "application/ocsp-response"));
  ocsp_answer_free(&a);
  ocsp_answer_init(&a);
  const char *none = "HTTP/1.1 100 Continue\r\nContent-Type: text/plain\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
  CHECK_EQ_INT(ocsp_answer_feed(&a, (const uint8_t *)none, strlen(none), error, sizeof error),
               OCSP_ANSWER_DONE);
  CHECK_STR(a.content_type, "");
  ocsp_answer_free(&a);
  CHECK(ocsp_media_type_is(" application/ocsp-response ", "application/ocsp-response"));
  CHECK(!ocsp_media_type_is("application/ocsp-responses", "application/ocsp-response"));
  CHECK(!ocsp_media_type_is("application/octet-stream", "application/ocsp-response"));
  CHECK(!ocsp_media_type_is("", "application/ocsp-response"));
}

static unsigned char *der_of(X509 *x, size_t *len) {
  uint8_t *der = NULL;
  int n = i2d_X509(x, &der);
  *len = n > 0 ? (size_t)n : 0;
  unsigned char *copy = malloc(*len);
  memcpy(copy, der, *len);
  OPENSSL_free(der);
  return copy;
}

static void test_issuer_from_answers(void) {
  X509 *leaf = pem("ocsp/crafted/leaf.pem"), *ca = pem("ocsp/crafted/ca.pem");
  X509 *stranger = pem("ocsp/crafted/stranger.pem");
  char err[256];
  enum issuer_format format;
  size_t len;
  unsigned char *der = testing_read("ocsp/crafted/ca.der", &len);
  X509 *got = issuer_from_answer(der, len, leaf, &format, err, sizeof err);
  CHECK(got && X509_cmp(got, ca) == 0);
  CHECK_EQ_INT(format, ISSUER_FORMAT_DER);
  X509_free(got);
  CHECK(issuer_from_answer(der, len - 1, leaf, &format, err, sizeof err) == NULL);
  CHECK_CONTAINS(err, "neither a DER certificate nor a PKCS#7");
  free(der);
  /* The bundle holds the stranger first: the signer is searched for. */
  der = testing_read("ocsp/crafted/ca.p7c", &len);
  got = issuer_from_answer(der, len, leaf, &format, err, sizeof err);
  CHECK(got && X509_cmp(got, ca) == 0);
  CHECK_EQ_INT(format, ISSUER_FORMAT_PKCS7);
  X509_free(got);
  CHECK(issuer_from_answer(der, len - 3, leaf, &format, err, sizeof err) == NULL);
  CHECK_CONTAINS(err, "PKCS#7 bundle is malformed");
  free(der);
  der = der_of(stranger, &len);
  CHECK(issuer_from_answer(der, len, leaf, &format, err, sizeof err) == NULL);
  CHECK_STR(err, "/CN=Crafted stranger CA did not sign this certificate");
  free(der);
  CHECK(issuer_from_answer((const uint8_t *)"<html>", 6, leaf, &format, err, sizeof err) == NULL);
  X509_free(leaf);
  X509_free(ca);
  X509_free(stranger);
}

static void test_cache_keeps_the_issuer_beside_the_staple(void) {
  char dir[] = "/tmp/stapler-cache-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char err[256];
  struct cert c = {.label = "c"};
  memset(c.fingerprint, 0x5a, sizeof c.fingerprint);
  CHECK(ocsp_cache_store(dir, &c, (const uint8_t *)"staple", 6, err, sizeof err));
  CHECK(ocsp_cache_store_issuer(dir, &c, (const uint8_t *)"issuer", 6, err, sizeof err));
  uint8_t *data;
  size_t len;
  CHECK(ocsp_cache_load_issuer(dir, &c, &data, &len));
  CHECK(len == 6 && !memcmp(data, "issuer", 6));
  free(data);
  char *path = ocsp_cache_issuer_path(dir, &c);
  CHECK_CONTAINS(path, "/5a5a5a5a");
  CHECK(strlen(path) > 7 && !strcmp(path + strlen(path) - 7, ".issuer"));
  struct stat st;
  CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0640);
  free(path);
  snprintf(err, sizeof err, "rm -rf %s", dir);
  CHECK(system(err) == 0);
}

TEST_MAIN({
  RUN(test_responder_answers);
  RUN(test_request_matches_openssl);
  RUN(test_openssl_made_answers);
  RUN(test_hand_corrupted);
  RUN(test_expired);
  RUN(test_schedule);
  RUN(test_policies);
  RUN(test_policy_fallback);
  RUN(test_cache_roundtrip);
  RUN(test_url_parse);
  RUN(test_staple_ends_with_its_delegated_signer);
  RUN(test_unknown_answer_is_not_made_the_staple);
  RUN(test_interim_responses_skipped);
  RUN(test_cache_temporary_file_is_private);
  RUN(test_schedule_after_the_same_answer);
  RUN(test_content_type_is_read);
  RUN(test_issuer_from_answers);
  RUN(test_cache_keeps_the_issuer_beside_the_staple);
})
