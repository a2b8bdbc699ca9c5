/* The HTTP/1.1 exchange logic: the input is split into client bytes and backend bytes (at the
 * first 0xff byte) and fed in small pieces, alternating, as a connection would. */
#include <stdint.h>
#include <string.h>

#include "stapler/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t sunk;
static void sink(void *ctx, const uint8_t *p, size_t n) {
  (void)ctx;
  if (n) sunk += p[0] + p[n - 1]; /* touch the bytes so ASan checks them */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *split = memchr(data, 0xff, size);
  size_t client_len = split ? (size_t)(split - data) : size;
  const uint8_t *backend = split ? split + 1 : data + size;
  size_t backend_len = size - client_len - (split ? 1 : 0);
  struct http1_params params = {.max_header_bytes = 4096, .forwarded_headers = true,
                                .client_ip = "192.0.2.1", .server_port = 443};
  struct http1_sink s = {sink, sink, NULL};
  struct http1 h;
  http1_init(&h, &params, &s);
  size_t ci = 0, bi = 0;
  while ((ci < client_len || bi < backend_len) && !h.error_status && !h.backend_broken) {
    size_t step = 1 + (ci + bi) % 7;
    if (ci < client_len) {
      size_t n = step < client_len - ci ? step : client_len - ci;
      size_t used = http1_client_data(&h, data + ci, n);
      ci += used ? used : n; /* a paused parser: drop what it will not take yet */
    }
    if (bi < backend_len) {
      size_t n = step < backend_len - bi ? step : backend_len - bi;
      http1_backend_data(&h, backend + bi, n);
      bi += n;
    }
  }
  if (!h.error_status) http1_backend_eof(&h);
  http1_free(&h);
  return 0;
}
