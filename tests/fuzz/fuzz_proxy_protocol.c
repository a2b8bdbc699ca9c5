/* The PROXY protocol header a load balancer sends before TLS: arbitrary bytes must be refused
 * or parsed, never read past their end; a header that parses, written again by stapler's own
 * writers (as it would be for the backend), parses back to the same addresses. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/proxy_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
  size_t n = a->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (a->ss_family != b->ss_family || memcmp(a, b, n) != 0) {
    fprintf(stderr, "PROXY header did not round-trip\n");
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* An exact-size heap copy, so reading one byte too far is an ASan report. */
  uint8_t *copy = malloc(size ? size : 1);
  memcpy(copy, data, size);
  struct pp_info info;
  size_t used = 0;
  const char *error = NULL;
  enum pp_result r = pp_parse(copy, size, &info, &used, &error);
  if (r == PP_OK && used > size) abort();
  if (r == PP_BAD && !error) abort();
  if (r == PP_OK && !info.local) {
    const struct sockaddr *src = (const struct sockaddr *)&info.src;
    const struct sockaddr *dst = (const struct sockaddr *)&info.dst;
    uint8_t out[512];
    size_t n = pp_write_v2(out, sizeof out, src, dst, (const uint8_t *)"h2", 2, "example.com");
    struct pp_info again;
    size_t used2;
    if (!n || pp_parse(out, n, &again, &used2, &error) != PP_OK || used2 != n) abort();
    same(&info.src, &again.src);
    same(&info.dst, &again.dst);
    n = pp_write_v1((char *)out, sizeof out, src, dst);
    if (!n || pp_parse(out, n, &again, &used2, &error) != PP_OK || used2 != n) abort();
    same(&info.src, &again.src);
    same(&info.dst, &again.dst);
  }
  free(copy);
  return 0;
}
