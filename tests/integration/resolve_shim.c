/* A getaddrinfo() for tests, loaded with LD_PRELOAD. STAPLER_TEST_RESOLVE="NAME=ADDR,ADDR..."
 * makes NAME resolve to those IPv4 addresses, in that order, as a DNS answer with several
 * records would; an ADDR may end in ":PORT", which replaces the service's port (an address
 * where nothing listens). Every other name goes to the real getaddrinfo(). Each result is one
 * malloc() block, which is what glibc's freeaddrinfo() frees. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct entry {
  struct addrinfo ai; /* first: freeing the addrinfo frees the entry */
  struct sockaddr_in sin;
};

typedef int gai_fn(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static int real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                            struct addrinfo **res) {
  gai_fn *real = (gai_fn *)dlsym(RTLD_NEXT, "getaddrinfo");
  return real ? real(node, service, hints, res) : EAI_FAIL;
}

/* One "A.B.C.D[:PORT]" of `len` bytes, or NULL when it is not that. */
static struct addrinfo *entry_for(const char *text, size_t len, uint16_t service_port) {
  char addr[64];
  if (len >= sizeof addr) return NULL;
  memcpy(addr, text, len);
  addr[len] = '\0';
  uint16_t port = service_port;
  char *colon = strchr(addr, ':');
  if (colon) {
    *colon = '\0';
    port = (uint16_t)atoi(colon + 1);
  }
  struct entry *e = calloc(1, sizeof *e);
  if (!e || inet_pton(AF_INET, addr, &e->sin.sin_addr) != 1) {
    free(e);
    return NULL;
  }
  e->sin.sin_family = AF_INET;
  e->sin.sin_port = htons(port);
  e->ai.ai_family = AF_INET;
  e->ai.ai_socktype = SOCK_STREAM;
  e->ai.ai_protocol = IPPROTO_TCP;
  e->ai.ai_addrlen = sizeof e->sin;
  e->ai.ai_addr = (struct sockaddr *)&e->sin;
  return &e->ai;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res) {
  const char *spec = getenv("STAPLER_TEST_RESOLVE");
  size_t name_len = node ? strlen(node) : 0;
  if (!spec || !node || strncmp(spec, node, name_len) != 0 || spec[name_len] != '=')
    return real_getaddrinfo(node, service, hints, res);
  uint16_t service_port = service ? (uint16_t)atoi(service) : 0;
  struct addrinfo *head = NULL, **tail = &head;
  for (const char *p = spec + name_len + 1; *p;) {
    size_t n = strcspn(p, ",");
    struct addrinfo *ai = entry_for(p, n, service_port);
    if (!ai) {
      freeaddrinfo(head);
      return EAI_NONAME;
    }
    *tail = ai;
    tail = &ai->ai_next;
    p += n;
    if (*p == ',') p++;
  }
  if (!head) return EAI_NONAME;
  *res = head;
  return 0;
}
