/* OCSP response parsing and full verification against a real certificate pair, at a time
 * inside the seed responses' validity so that every check is reachable. */
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "stapler/ocsp_verify.h"
#include "stapler/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509 *load(const char *name) {
  char path[512];
  snprintf(path, sizeof path, "%s/ocsp/openssl/%s", TEST_DATA_DIR, name);
  FILE *f = fopen(path, "r");
  if (!f) abort();
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if (!x) abort();
  return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static X509 *leaf, *issuer;
  if (!leaf) {
    leaf = load("D1_Cert_EE.pem");
    issuer = load("D1_Issuer_ICA.pem");
  }
  struct ocsp_parsed parsed;
  struct ocsp_result result;
  (void)ocsp_parse_response(data, size, &parsed);
  (void)ocsp_verify(data, size, leaf, issuer, 1351000000 /* 2012-10-23 */, &result);
  return 0;
}
