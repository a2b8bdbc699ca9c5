/* The HTTP answer from an OCSP responder, fed in pieces, then EOF. */
#include <stdint.h>

#include "stapler/ocsp_fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct ocsp_answer a;
  char error[200];
  ocsp_answer_init(&a);
  enum ocsp_answer_state st = OCSP_ANSWER_MORE;
  size_t off = 0;
  while (off < size && st == OCSP_ANSWER_MORE) {
    size_t n = 1 + data[off] % 64;
    if (n > size - off) n = size - off;
    st = ocsp_answer_feed(&a, data + off, n, error, sizeof error);
    off += n;
  }
  if (st == OCSP_ANSWER_MORE) (void)ocsp_answer_eof(&a, error, sizeof error);
  ocsp_answer_free(&a);
  return 0;
}
