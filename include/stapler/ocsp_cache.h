/* Verified OCSP responses on disk, one file per certificate named after the SHA-256 of the
 * certificate itself, so a renewed certificate never picks up its predecessor's staple. Files
 * are replaced atomically (temporary file, fsync, rename, fsync of the directory): a crash
 * leaves the old response or the new one, never half of either. Callers verify what they load. */
#ifndef STAPLER_OCSP_CACHE_H
#define STAPLER_OCSP_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stapler/cert.h"

/* Creates the directory (and parents) if needed. False with `err` when it is unusable. */
bool ocsp_cache_prepare(const char *dir, char *err, size_t err_len);

/* The file for `c`: DIR/<sha256 of the leaf, hex>.ocsp. The caller frees it. */
char *ocsp_cache_path(const char *dir, const struct cert *c);

/* Reads the cached response for `c`. False when there is none (or it is unreadable). */
bool ocsp_cache_load(const char *dir, const struct cert *c, uint8_t **der, size_t *len);

/* Stores `der` for `c`. False with `err` on failure (the previous file stays). */
bool ocsp_cache_store(const char *dir, const struct cert *c, const uint8_t *der, size_t len,
                      char *err, size_t err_len);

#endif
