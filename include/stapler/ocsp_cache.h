/* Verified OCSP responses on disk, one file per certificate named after the SHA-256 of the
 * certificate itself, so a renewed certificate never picks up its predecessor's staple; beside
 * them, the issuers fetched for leaf-only chains from their caIssuers URL. Files are replaced
 * atomically (a temporary file of a unique name, fsync, rename, fsync of the directory): a crash
 * leaves the old file or the new one, never half of either, and instances sharing the directory
 * never write into each other's temporary files. Callers verify what they load. */
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

/* The issuer of `c` (DER): DIR/<sha256 of the leaf, hex>.issuer. Same rules as above. */
char *ocsp_cache_issuer_path(const char *dir, const struct cert *c);
bool ocsp_cache_load_issuer(const char *dir, const struct cert *c, uint8_t **der, size_t *len);
bool ocsp_cache_store_issuer(const char *dir, const struct cert *c, const uint8_t *der,
                             size_t len, char *err, size_t err_len);

#endif
