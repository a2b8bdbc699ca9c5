/* OCSP response parsing and verification against real responses (see data/README.md). */
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "stapler/certinfo.h"
#include "stapler/ocsp_certid.h"
#include "stapler/ocsp_parse.h"
#include "stapler/ocsp_verify.h"
#include "testing.h"

static X509 *load_pem(const char *rel) {
  size_t len;
  unsigned char *data = testing_read(rel, &len);
  BIO *bio = BIO_new_mem_buf(data, (ssize_t)len);
  X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  BIO_free(bio);
  free(data);
  if (!x) fprintf(stderr, "cannot parse %s\n", rel);
  return x;
}

/* Verifies `resp` at a time inside its own validity window (its thisUpdate plus a minute), so
 * that the other checks are what decides. */
static enum ocsp_error verify_at_own_time(const char *resp, const char *leaf, const char *issuer,
                                          struct ocsp_result *r) {
  size_t len;
  unsigned char *der = testing_read(resp, &len);
  struct ocsp_parsed p;
  time_t now = time(NULL);
  if (!ocsp_parse_response(der, len, &p) && p.single_count) now = p.singles[0].this_update + 60;
  X509 *l = load_pem(leaf), *i = load_pem(issuer);
  enum ocsp_error err = ocsp_verify(der, len, l, i, now, r);
  X509_free(l);
  X509_free(i);
  free(der);
  return err;
}

struct vector {
  const char *resp, *leaf, *issuer;
  enum ocsp_error want;
};

#define O "ocsp/openssl/"
static const struct vector kOpenssl[] = {
    /* Real responses: ND* signed by the issuer, D* by a delegated responder. */
    {O "ND1.der", O "ND1_Cert_EE.pem", O "ND1_Issuer_ICA.pem", OCSP_OK},
    {O "ND2.der", O "ND2_Cert_ICA.pem", O "ND2_Issuer_Root.pem", OCSP_OK},
    {O "ND3.der", O "ND3_Cert_EE.pem", O "ND3_Issuer_Root.pem", OCSP_OK},
    {O "D1.der", O "D1_Cert_EE.pem", O "D1_Issuer_ICA.pem", OCSP_OK},
    {O "D2.der", O "D2_Cert_ICA.pem", O "D2_Issuer_Root.pem", OCSP_OK},
    {O "D3.der", O "D3_Cert_EE.pem", O "D3_Issuer_Root.pem", OCSP_OK},
    /* Signature on the response corrupted. */
    {O "ISOP_ND1.der", O "ND1_Cert_EE.pem", O "ND1_Issuer_ICA.pem", OCSP_ERR_SIGNATURE},
    {O "ISOP_ND2.der", O "ND2_Cert_ICA.pem", O "ND2_Issuer_Root.pem", OCSP_ERR_SIGNATURE},
    {O "ISOP_ND3.der", O "ND3_Cert_EE.pem", O "ND3_Issuer_Root.pem", OCSP_ERR_SIGNATURE},
    {O "ISOP_D1.der", O "D1_Cert_EE.pem", O "D1_Issuer_ICA.pem", OCSP_ERR_SIGNATURE},
    {O "ISOP_D2.der", O "D2_Cert_ICA.pem", O "D2_Issuer_Root.pem", OCSP_ERR_SIGNATURE},
    {O "ISOP_D3.der", O "D3_Cert_EE.pem", O "D3_Issuer_Root.pem", OCSP_ERR_SIGNATURE},
    /* Responder ID altered: nobody we know signed it. */
    {O "WRID_ND1.der", O "ND1_Cert_EE.pem", O "ND1_Issuer_ICA.pem", OCSP_ERR_SIGNER_NOT_FOUND},
    {O "WRID_ND2.der", O "ND2_Cert_ICA.pem", O "ND2_Issuer_Root.pem", OCSP_ERR_SIGNER_NOT_FOUND},
    {O "WRID_ND3.der", O "ND3_Cert_EE.pem", O "ND3_Issuer_Root.pem", OCSP_ERR_SIGNER_NOT_FOUND},
    {O "WRID_D1.der", O "D1_Cert_EE.pem", O "D1_Issuer_ICA.pem", OCSP_ERR_SIGNER_NOT_FOUND},
    {O "WRID_D2.der", O "D2_Cert_ICA.pem", O "D2_Issuer_Root.pem", OCSP_ERR_SIGNER_NOT_FOUND},
    {O "WRID_D3.der", O "D3_Cert_EE.pem", O "D3_Issuer_Root.pem", OCSP_ERR_SIGNER_NOT_FOUND},
    /* CertID issuer name hash or key hash altered inside the signed data: the signature breaks. */
    {O "WINH_ND1.der", O "ND1_Cert_EE.pem", O "ND1_Issuer_ICA.pem", OCSP_ERR_SIGNATURE},
    {O "WINH_D2.der", O "D2_Cert_ICA.pem", O "D2_Issuer_Root.pem", OCSP_ERR_SIGNATURE},
    {O "WIKH_ND3.der", O "ND3_Cert_EE.pem", O "ND3_Issuer_Root.pem", OCSP_ERR_SIGNATURE},
    {O "WIKH_D3.der", O "D3_Cert_EE.pem", O "D3_Issuer_Root.pem", OCSP_ERR_SIGNATURE},
    /* Delegated responder certificate with a wrong key: byKey IDs then match nothing (D1, D2),
     * the byName one (D3) finds a certificate its issuer did not sign. */
    {O "WKDOSC_D1.der", O "D1_Cert_EE.pem", O "D1_Issuer_ICA.pem", OCSP_ERR_SIGNER_NOT_FOUND},
    {O "WKDOSC_D2.der", O "D2_Cert_ICA.pem", O "D2_Issuer_Root.pem", OCSP_ERR_SIGNER_NOT_FOUND},
    {O "WKDOSC_D3.der", O "D3_Cert_EE.pem", O "D3_Issuer_Root.pem", OCSP_ERR_UNAUTHORIZED},
    /* Delegated responder certificate whose signature by the issuer is broken. */
    {O "ISDOSC_D1.der", O "D1_Cert_EE.pem", O "D1_Issuer_ICA.pem", OCSP_ERR_UNAUTHORIZED},
    {O "ISDOSC_D2.der", O "D2_Cert_ICA.pem", O "D2_Issuer_Root.pem", OCSP_ERR_UNAUTHORIZED},
    {O "ISDOSC_D3.der", O "D3_Cert_EE.pem", O "D3_Issuer_Root.pem", OCSP_ERR_UNAUTHORIZED},
    /* A valid response checked against another certificate. */
    {O "ND1.der", O "D1_Cert_EE.pem", O "ND1_Issuer_ICA.pem", OCSP_ERR_WRONG_CERT},
};

static void test_openssl_vectors(void) {
  for (size_t i = 0; i < sizeof kOpenssl / sizeof kOpenssl[0]; i++) {
    const struct vector *v = &kOpenssl[i];
    struct ocsp_result r;
    testing_current = v->resp;
    enum ocsp_error err = verify_at_own_time(v->resp, v->leaf, v->issuer, &r);
    if (err != v->want)
      fprintf(stderr, "  %s: got %s (%s), want %s\n", v->resp, ocsp_error_name(err), r.detail,
              ocsp_error_name(v->want));
    CHECK_EQ_INT(err, v->want);
    if (v->want == OCSP_OK) CHECK_EQ_INT(r.status, OCSP_STATUS_GOOD);
  }
}

static void test_delegated_and_direct_reported(void) {
  struct ocsp_result r;
  CHECK_EQ_INT(verify_at_own_time(O "D1.der", O "D1_Cert_EE.pem", O "D1_Issuer_ICA.pem", &r),
               OCSP_OK);
  CHECK(r.delegated);
  CHECK_CONTAINS(r.responder, "OCSP responder");
  CHECK_EQ_INT(verify_at_own_time(O "ND1.der", O "ND1_Cert_EE.pem", O "ND1_Issuer_ICA.pem", &r),
               OCSP_OK);
  CHECK(!r.delegated);
}

static void test_time_window(void) {
  size_t len;
  unsigned char *der = testing_read(O "ND1.der", &len);
  X509 *leaf = load_pem(O "ND1_Cert_EE.pem"), *issuer = load_pem(O "ND1_Issuer_ICA.pem");
  struct ocsp_parsed p;
  CHECK(ocsp_parse_response(der, len, &p) == NULL);
  struct ocsp_result r;
  time_t this_update = p.singles[0].this_update, next_update = p.singles[0].next_update;
  CHECK_EQ_INT(ocsp_verify(der, len, leaf, issuer, next_update, &r), OCSP_ERR_EXPIRED);
  CHECK_EQ_INT(ocsp_verify(der, len, leaf, issuer, next_update - 1, &r), OCSP_OK);
  CHECK_EQ_INT(r.next_update, next_update);
  CHECK_EQ_INT(ocsp_verify(der, len, leaf, issuer, this_update - OCSP_CLOCK_SKEW_SECONDS, &r),
               OCSP_OK);
  CHECK_EQ_INT(ocsp_verify(der, len, leaf, issuer, this_update - OCSP_CLOCK_SKEW_SECONDS - 1, &r),
               OCSP_ERR_NOT_YET_VALID);
  X509_free(leaf);
  X509_free(issuer);
  free(der);
}

/* Any cut or any single flipped byte must be refused without crashing; flips outside the
 * signed part may still verify (e.g. inside the included certificate's unsigned fields are
 * none, but the outer lengths are), so only truncations are asserted to fail. */
static void test_truncations_and_flips(void) {
  size_t len;
  unsigned char *der = testing_read(O "D1.der", &len);
  X509 *leaf = load_pem(O "D1_Cert_EE.pem"), *issuer = load_pem(O "D1_Issuer_ICA.pem");
  struct ocsp_parsed p;
  CHECK(ocsp_parse_response(der, len, &p) == NULL);
  time_t now = p.singles[0].this_update + 60;
  struct ocsp_result r;
  for (size_t cut = 0; cut < len; cut++)
    CHECK(ocsp_verify(der, cut, leaf, issuer, now, &r) != OCSP_OK);
  int accepted = 0;
  for (size_t i = 0; i < len; i++) {
    der[i] ^= 0x01;
    if (ocsp_verify(der, len, leaf, issuer, now, &r) == OCSP_OK) accepted++;
    der[i] ^= 0x01;
  }
  CHECK_EQ_INT(accepted, 0);
  /* Trailing garbage after the outer SEQUENCE. */
  unsigned char *longer = malloc(len + 1);
  memcpy(longer, der, len);
  longer[len] = 0;
  CHECK_EQ_INT(ocsp_verify(longer, len + 1, leaf, issuer, now, &r), OCSP_ERR_MALFORMED);
  free(longer);
  X509_free(leaf);
  X509_free(issuer);
  free(der);
}

#define P "ocsp/pyca/"
static void test_pyca_vectors(void) {
  struct ocsp_result r;
  CHECK_EQ_INT(verify_at_own_time(P "resp-sha256.der", P "cryptography.io.precert.pem",
                                  P "letsencryptx3.pem", &r),
               OCSP_OK);
  CHECK_EQ_INT(verify_at_own_time(P "resp-invalid-signature-oid.der",
                                  P "cryptography.io.precert.pem", P "letsencryptx3.pem", &r),
               OCSP_ERR_ALGORITHM);
  CHECK_EQ_INT(verify_at_own_time(P "resp-unauthorized.der", P "cryptography.io.precert.pem",
                                  P "letsencryptx3.pem", &r),
               OCSP_ERR_RESPONSE_STATUS);
  CHECK_CONTAINS(r.detail, "unauthorized");
  CHECK_EQ_INT(verify_at_own_time(P "resp-unknown-response-status.der",
                                  P "cryptography.io.precert.pem", P "letsencryptx3.pem", &r),
               OCSP_ERR_RESPONSE_STATUS);
  CHECK_EQ_INT(verify_at_own_time(P "resp-successful-no-response-bytes.der",
                                  P "cryptography.io.precert.pem", P "letsencryptx3.pem", &r),
               OCSP_ERR_MALFORMED);
  CHECK_EQ_INT(verify_at_own_time(P "resp-response-type-unknown-oid.der",
                                  P "cryptography.io.precert.pem", P "letsencryptx3.pem", &r),
               OCSP_ERR_NOT_BASIC);
  /* Signed by a test CA that is not the CertID's issuer and not included. */
  CHECK_EQ_INT(verify_at_own_time(P "resp-revoked-no-next-update.der", P "cryptography.io.pem",
                                  P "rapidssl_sha256_ca_g3.pem", &r),
               OCSP_ERR_SIGNER_NOT_FOUND);
}

static void test_pyca_structure(void) {
  size_t len;
  struct ocsp_parsed p;
  unsigned char *der = testing_read(P "ocsp-army.deps.mil-resp.der", &len);
  CHECK(ocsp_parse_response(der, len, &p) == NULL);
  CHECK_EQ_INT(p.single_count, 20);
  free(der);
  der = testing_read(P "resp-revoked-no-next-update.der", &len);
  CHECK(ocsp_parse_response(der, len, &p) == NULL);
  CHECK_EQ_INT(p.singles[0].status, OCSP_STATUS_REVOKED);
  CHECK(!p.singles[0].has_next_update);
  free(der);
  der = testing_read(P "resp-revoked-reason.der", &len);
  CHECK(ocsp_parse_response(der, len, &p) == NULL);
  CHECK_EQ_INT(p.singles[0].status, OCSP_STATUS_REVOKED);
  CHECK(p.singles[0].revocation_reason >= 0);
  free(der);
  der = testing_read(P "resp-unknown-hash-alg.der", &len);
  CHECK(ocsp_parse_response(der, len, &p) == NULL);
  CHECK(ocsp_hash_from_oid(&p.singles[0].hash_oid) == NULL);
  free(der);
  const char *parse_ok[] = {P "resp-sct-extension.der", P "resp-unknown-extension.der",
                            P "resp-single-extension-reason.der", P "resp-delegate-unknown-cert.der",
                            P "resp-responder-key-hash.der", P "resp-revoked.der"};
  for (size_t i = 0; i < sizeof parse_ok / sizeof *parse_ok; i++) {
    der = testing_read(parse_ok[i], &len);
    const char *err = ocsp_parse_response(der, len, &p);
    if (err) fprintf(stderr, "  %s: %s\n", parse_ok[i], err);
    CHECK(err == NULL);
    free(der);
  }
}

/* hitch's response verifies today, through a delegated responder, but has no nextUpdate. */
static void test_hitch_no_next_update(void) {
  struct ocsp_result r;
  size_t len;
  unsigned char *der = testing_read("ocsp/hitch/valid.example.com.ocsp.der", &len);
  X509 *leaf = load_pem("ocsp/hitch/valid.example.com.cert.pem");
  X509 *issuer = load_pem("ocsp/hitch/valid.example.com.chain.pem");
  CHECK_EQ_INT(ocsp_verify(der, len, leaf, issuer, time(NULL), &r), OCSP_ERR_NO_NEXT_UPDATE);
  CHECK(r.delegated);
  X509_free(leaf);
  X509_free(issuer);
  free(der);
}

#define C "ocsp/crafted/"
static enum ocsp_error verify_crafted(const char *resp, struct ocsp_result *r) {
  return verify_at_own_time(resp, C "leaf.pem", C "ca.pem", r);
}

/* RFC 5280 7.1: a byName ResponderID is the signer's Name compared case-insensitively, with
 * runs of spaces folded, whatever string type spells it. */
static void test_by_name_compared_as_canonical_names(void) {
  struct ocsp_result r;
  enum ocsp_error err = verify_crafted(C "byname-canonical.der", &r);
  if (err != OCSP_OK) fprintf(stderr, "  %s\n", r.detail);
  CHECK_EQ_INT(err, OCSP_OK);
  CHECK(r.delegated);
  CHECK_CONTAINS(r.responder, "Crafted OCSP Responder");
}

/* A client could not honour the responder certificate's extension (RFC 5280 4.2). */
static void test_delegate_with_unknown_critical_extension_refused(void) {
  struct ocsp_result r;
  CHECK_EQ_INT(verify_crafted(C "critical-signer.der", &r), OCSP_ERR_UNAUTHORIZED);
  CHECK_CONTAINS(r.detail, "critical extension");
}

/* Only the answer for our certificate has to be understood completely. */
static void test_critical_extension_in_another_certificates_answer(void) {
  struct ocsp_result r;
  enum ocsp_error err = verify_crafted(C "other-single-critical.der", &r);
  if (err != OCSP_OK) fprintf(stderr, "  %s\n", r.detail);
  CHECK_EQ_INT(err, OCSP_OK);
  CHECK_EQ_INT(r.status, OCSP_STATUS_GOOD);
  CHECK_EQ_INT(verify_crafted(C "own-single-critical.der", &r), OCSP_ERR_MALFORMED);
  CHECK_CONTAINS(r.detail, "critical extension");
}

/* An answer is good only while its delegated signer is: valid_until is the earlier of the two,
 * and from then on the answer is expired. */
static void test_delegated_signer_bounds_the_answer(void) {
  X509 *signer = load_pem(C "resp-short.pem");
  time_t not_before, not_after;
  CHECK(certinfo_validity(signer, &not_before, &not_after));
  struct ocsp_result r;
  CHECK_EQ_INT(verify_crafted(C "good-short-signer.der", &r), OCSP_OK);
  CHECK_EQ_INT(r.signer_not_after, not_after);
  CHECK_EQ_INT(r.valid_until, not_after);
  CHECK(r.next_update > not_after);
  size_t len;
  unsigned char *der = testing_read(C "good-short-signer.der", &len);
  X509 *leaf = load_pem(C "leaf.pem"), *ca = load_pem(C "ca.pem");
  CHECK_EQ_INT(ocsp_verify(der, len, leaf, ca, not_after - 1, &r), OCSP_OK);
  CHECK_EQ_INT(ocsp_verify(der, len, leaf, ca, not_after, &r), OCSP_ERR_EXPIRED);
  CHECK_CONTAINS(r.detail, "delegated responder's certificate expired");
  CHECK_EQ_INT(ocsp_verify(der, len, leaf, ca, not_before - 1, &r), OCSP_ERR_NOT_YET_VALID);
  /* Signed by the issuer: nextUpdate alone. */
  CHECK_EQ_INT(verify_at_own_time(O "ND1.der", O "ND1_Cert_EE.pem", O "ND1_Issuer_ICA.pem", &r),
               OCSP_OK);
  CHECK_EQ_INT(r.signer_not_after, 0);
  CHECK_EQ_INT(r.valid_until, r.next_update);
  X509_free(leaf);
  X509_free(ca);
  X509_free(signer);
  free(der);
}

TEST_MAIN({
  RUN(test_openssl_vectors);
  RUN(test_delegated_and_direct_reported);
  RUN(test_time_window);
  RUN(test_truncations_and_flips);
  RUN(test_pyca_vectors);
  RUN(test_pyca_structure);
  RUN(test_hitch_no_next_update);
  RUN(test_by_name_compared_as_canonical_names);
  RUN(test_delegate_with_unknown_critical_extension_refused);
  RUN(test_critical_extension_in_another_certificates_answer);
  RUN(test_delegated_signer_bounds_the_answer);
})
