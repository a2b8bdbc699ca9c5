#include "stapler/ocsp_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stapler/ocsp_fetch.h"
#include "stapler/util.h"

bool ocsp_cache_prepare(const char *dir, char *err, size_t err_len) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
    snprintf(err, err_len, "path too long");
    return false;
  }
  for (char *p = path + 1; *p; p++) { /* mkdir -p */
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST) break;
    *p = '/';
  }
  if (mkdir(path, 0750) != 0 && errno != EEXIST) {
    snprintf(err, err_len, "cannot create %s: %s", dir, strerror(errno));
    return false;
  }
  if (access(dir, W_OK | X_OK) != 0) {
    snprintf(err, err_len, "%s is not writable: %s", dir, strerror(errno));
    return false;
  }
  return true;
}

char *ocsp_cache_path(const char *dir, const struct cert *c) {
  char hex[65];
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", c->fingerprint[i]);
  char *path = NULL;
  if (asprintf(&path, "%s/%s.ocsp", dir, hex) < 0) die_oom();
  return path;
}

bool ocsp_cache_load(const char *dir, const struct cert *c, uint8_t **der, size_t *len) {
  char *path = ocsp_cache_path(dir, c);
  bool ok = !read_file(path, der, len, OCSP_FETCH_MAX_BODY);
  free(path);
  return ok;
}

static bool write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= (size_t)w;
  }
  return true;
}

static void sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  fsync(fd);
  close(fd);
}

bool ocsp_cache_store(const char *dir, const struct cert *c, const uint8_t *der, size_t len,
                      char *err, size_t err_len) {
  char *path = ocsp_cache_path(dir, c);
  char *tmp = NULL;
  if (asprintf(&tmp, "%s.%ld.tmp", path, (long)getpid()) < 0) die_oom();
  bool ok = false;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) {
    snprintf(err, err_len, "cannot create %s: %s", tmp, strerror(errno));
  } else if (!write_all(fd, der, len) || fsync(fd) != 0) {
    snprintf(err, err_len, "cannot write %s: %s", tmp, strerror(errno));
    close(fd);
    unlink(tmp);
  } else if (close(fd) != 0 || rename(tmp, path) != 0) {
    snprintf(err, err_len, "cannot replace %s: %s", path, strerror(errno));
    unlink(tmp);
  } else {
    sync_dir(dir);
    ok = true;
  }
  free(tmp);
  free(path);
  return ok;
}
