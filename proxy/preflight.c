#include "stapler/preflight.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stapler/listener.h"
#include "stapler/util.h"

/* Descriptors each worker holds besides connections: its epoll, its async wake-up, libuv's
 * spare, a signal pipe end, the pause timer's nothing: a margin of eight. */
#define FDS_PER_WORKER 8
/* stdio, the control loop, the log writer, the admin endpoint and its connections. */
#define FDS_FIXED 64

uint64_t preflight_fds_needed(const struct config *cfg, unsigned workers) {
  uint64_t per_worker = FDS_PER_WORKER + cfg->listen_count;
  return 2ull * cfg->limits.max_connections + workers * per_worker + FDS_FIXED +
         2ull * cfg->cert_count; /* an OCSP fetch and a cache file each */
}

void preflight_fd_limit(const struct config *cfg, unsigned workers, uint64_t limit,
                        struct strlist *warnings) {
  uint64_t need = preflight_fds_needed(cfg, workers);
  if (limit >= need) return;
  uint64_t fits = limit > need - 2ull * cfg->limits.max_connections
                      ? (limit - (need - 2ull * cfg->limits.max_connections)) / 2
                      : 0;
  strlist_add(warnings,
              "limits.max_connections %u needs about %llu file descriptors but the open-file "
              "limit is %llu: about %llu connections fit; beyond that new connections wait "
              "until descriptors free up. Raise the limit (ulimit -n, systemd LimitNOFILE=, "
              "docker run --ulimit nofile=N:N) or lower limits.max_connections",
              cfg->limits.max_connections, (unsigned long long)need,
              (unsigned long long)limit, (unsigned long long)fits);
}

/* ---- who holds an address -------------------------------------------------------------------*/

/* The inode of a listening socket on `ss` from /proc/net/tcp{,6}, or 0. */
static unsigned long listening_inode(const struct sockaddr_storage *ss) {
  bool v6 = ss->ss_family == AF_INET6;
  FILE *f = fopen(v6 ? "/proc/net/tcp6" : "/proc/net/tcp", "r");
  if (!f) return 0;
  char line[512], want[64];
  if (v6) {
    const uint32_t *w = (const uint32_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    snprintf(want, sizeof want, "%08X%08X%08X%08X:%04X", w[0], w[1], w[2], w[3],
             ntohs(((const struct sockaddr_in6 *)ss)->sin6_port));
  } else {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    snprintf(want, sizeof want, "%08X:%04X", in->sin_addr.s_addr, ntohs(in->sin_port));
  }
  unsigned long inode = 0;
  while (!inode && fgets(line, sizeof line, f)) {
    char local[64], remote[64];
    unsigned st;
    unsigned long ino;
    if (sscanf(line, " %*d: %63s %63s %x %*s %*s %*s %*s %*s %lu", local, remote, &st, &ino) == 4 &&
        st == 0x0A /* LISTEN */ && !strcmp(local, want))
      inode = ino;
  }
  fclose(f);
  return inode;
}

/* The process holding socket `inode`: its pid and command name (when /proc lets us see it). */
static long socket_owner(unsigned long inode, char *comm, size_t cap) {
  char want[64];
  snprintf(want, sizeof want, "socket:[%lu]", inode);
  DIR *proc = opendir("/proc");
  if (!proc) return 0;
  long found = 0;
  for (struct dirent *d; !found && (d = readdir(proc));) {
    char *end;
    long pid = strtol(d->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%ld/fd", pid);
    DIR *fds = opendir(dir);
    if (!fds) continue;
    for (struct dirent *e; !found && (e = readdir(fds));) {
      char path[320], target[64];
      snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
      ssize_t n = readlink(path, target, sizeof target - 1);
      if (n > 0 && (target[n] = '\0', !strcmp(target, want))) found = pid;
    }
    closedir(fds);
  }
  closedir(proc);
  if (found) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/comm", found);
    FILE *f = fopen(path, "r");
    if (!f || !fgets(comm, (int)cap, f)) snprintf(comm, cap, "?");
    if (f) fclose(f);
    comm[strcspn(comm, "\n")] = '\0';
  }
  return found;
}

static void address_in_use(const char *key, const struct config_addr *addr,
                           struct strlist *errors, struct strlist *warnings) {
  char comm[64] = "";
  unsigned long inode = listening_inode(&addr->ss);
  long pid = inode ? socket_owner(inode, comm, sizeof comm) : 0;
  if (pid && !strcmp(comm, "stapler"))
    strlist_add(warnings, "%s %s is held by stapler (pid %ld): fine to reload that instance; "
                          "a second one would be refused", key, addr->text, pid);
  else if (pid)
    strlist_add(errors, "%s %s: address already in use by %s (pid %ld)", key, addr->text, comm,
                pid);
  else
    strlist_add(errors, "%s %s: address already in use by another process", key, addr->text);
}

/* Below this port binding needs CAP_NET_BIND_SERVICE (root has it). */
static unsigned unprivileged_port_start(void) {
  FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "r");
  unsigned v = 1024;
  if (f) {
    if (fscanf(f, "%u", &v) != 1) v = 1024;
    fclose(f);
  }
  return v;
}

static bool may_bind_privileged(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return geteuid() == 0;
  char line[256];
  unsigned long long eff = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "CapEff: %llx", &eff) == 1) break;
  fclose(f);
  return (eff >> 10) & 1; /* CAP_NET_BIND_SERVICE */
}

const char *preflight_bind_hint(const struct config_addr *addr, int err) {
  if (err == EACCES && addr->port && addr->port < unprivileged_port_start())
    return "; ports below 1024 need CAP_NET_BIND_SERVICE: run as root, give the binary the "
           "capability (setcap cap_net_bind_service=+ep /path/to/stapler; the Docker image's "
           "has it), or use a higher port";
  if (err == EADDRINUSE)
    return "; another process listens there (check with: ss -ltnp)";
  return "";
}

static void check_address(const char *key, const struct config_addr *addr, bool reuse_port,
                          struct strlist *errors, struct strlist *warnings) {
  if (addr->unix_path) return;
  if (addr->port && addr->port < unprivileged_port_start() && !may_bind_privileged()) {
    strlist_add(errors, "%s %s%s", key, addr->text, preflight_bind_hint(addr, EACCES));
    return;
  }
  struct config_listen probe = {.addr = *addr, .reuse_port = reuse_port};
  char err[256];
  if (!listener_probe(&probe, err, sizeof err)) {
    if (strstr(err, "already in use"))
      address_in_use(key, addr, errors, warnings);
    else
      strlist_add(errors, "%s %s: %s", key, addr->text, err);
  }
}

void preflight_addresses(const struct config *cfg, struct strlist *errors,
                         struct strlist *warnings) {
  for (size_t i = 0; i < cfg->listen_count; i++)
    check_address("listen", &cfg->listen[i].addr, cfg->listen[i].reuse_port, errors, warnings);
  if (cfg->admin.enabled) check_address("admin.address", &cfg->admin.addr, false, errors, warnings);
}

void preflight_cache_dir(const struct config *cfg, struct strlist *errors) {
  const char *dir = cfg->ocsp.cache_dir;
  if (!cfg->ocsp.fetch || !dir) return;
  char *copy = xstrdup(dir);
  /* The directory, or the nearest existing parent it would be created in. */
  const char *probe = dir;
  while (access(probe, F_OK) != 0 && strcmp(probe, "/") && strcmp(probe, ".")) probe = dirname(copy);
  if (access(probe, W_OK | X_OK) != 0)
    strlist_add(errors, "ocsp.cache_dir %s: %s is not writable by uid %u (%s): staples would "
                        "not survive a restart", dir, probe, (unsigned)geteuid(), strerror(errno));
  free(copy);
}
