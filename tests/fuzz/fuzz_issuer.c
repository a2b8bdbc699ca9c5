/* What a caIssuers URL serves (a DER certificate or a certs-only PKCS#7), searched for the
 * signer of a fixed real leaf. */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "stapler/issuer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509 *fixed_leaf(void) {
  static X509 *leaf;
  if (!leaf) {
    FILE *f = fopen(TEST_DATA_DIR "/ocsp/crafted/leaf.pem", "r");
    if (!f) abort();
    leaf = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!leaf) abort();
  }
  return leaf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[256];
  enum issuer_format format;
  X509_free(issuer_from_answer(data, size, fixed_leaf(), &format, err, sizeof err));
  ERR_clear_error();
  return 0;
}
