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

/* DIR/<sha256 of the leaf, hex><suffix>. */
static char *file_path(const char *dir, const struct cert *c, const char *suffix) {
  char hex[65];
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", c->fingerprint[i]);
  char *path = NULL;
  if (asprintf(&path, "%s/%s%s", dir, hex, suffix) < 0) die_oom();
  return path;
}

static bool load(const char *dir, const struct cert *c, const char *suffix, uint8_t **der,
                 size_t *len) {
  char *path = file_path(dir, c, suffix);
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

/* mkstemp: a PID would not do, containers sharing the directory all run stapler as PID 1. */
static bool store(const char *dir, const struct cert *c, const char *suffix, const uint8_t *der,
                  size_t len, char *err, size_t err_len) {
  char *path = file_path(dir, c, suffix);
  char *tmp = NULL;
  if (asprintf(&tmp, "%s.XXXXXX", path) < 0) die_oom();
  bool ok = false;
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, err_len, "cannot create a temporary file beside %s: %s", path, strerror(errno));
  } else if (fchmod(fd, 0640) != 0 || !write_all(fd, der, len) || fsync(fd) != 0) {
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

char *ocsp_cache_path(const char *dir, const struct cert *c) {
  return file_path(dir, c, ".ocsp");
}

bool ocsp_cache_load(const char *dir, const struct cert *c, uint8_t **der, size_t *len) {
  return load(dir, c, ".ocsp", der, len);
}

bool ocsp_cache_store(const char *dir, const struct cert *c, const uint8_t *der, size_t len,
                      char *err, size_t err_len) {
  return store(dir, c, ".ocsp", der, len, err, err_len);
}

char *ocsp_cache_issuer_path(const char *dir, const struct cert *c) {
  return file_path(dir, c, ".issuer");
}

bool ocsp_cache_load_issuer(const char *dir, const struct cert *c, uint8_t **der, size_t *len) {
  return load(dir, c, ".issuer", der, len);
}

bool ocsp_cache_store_issuer(const char *dir, const struct cert *c, const uint8_t *der,
                             size_t len, char *err, size_t err_len) {
  return store(dir, c, ".issuer", der, len, err, err_len);
}
