/* The request builder's inputs: certificates as found in PEM files, here as DER. The input is a
 * leaf and an issuer, split at the first "\xff\xff\xff\xff"; when the split is absent, the input
 * is the leaf and a fixed real issuer is used. */
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/certinfo.h"
#include "stapler/ocsp_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509 *fixed_issuer(void) {
  static X509 *issuer;
  if (!issuer) {
    FILE *f = fopen(TEST_DATA_DIR "/ocsp/stapler/ca.pem", "r");
    if (!f) abort();
    issuer = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
  }
  return issuer;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const uint8_t sep[] = {0xff, 0xff, 0xff, 0xff};
  const uint8_t *split = memmem(data, size, sep, sizeof sep);
  const uint8_t *p = data;
  X509 *leaf = d2i_X509(NULL, &p, (long)(split ? (size_t)(split - data) : size));
  X509 *issuer = NULL;
  if (split) {
    p = split + sizeof sep;
    issuer = d2i_X509(NULL, &p, (long)(size - (size_t)(p - data)));
  }
  if (leaf) {
    struct cert_info info;
    (void)certinfo_read(leaf, &info);
    certinfo_free(&info);
    uint8_t *der;
    size_t len;
    if (ocsp_request_build(leaf, issuer ? issuer : fixed_issuer(), &der, &len)) {
      free(ocsp_request_get_url(info.ocsp_url ? "http://x/" : "http://y/p", der, len));
      free(der);
    }
  }
  X509_free(leaf);
  X509_free(issuer);
  ERR_clear_error();
  return 0;
}
