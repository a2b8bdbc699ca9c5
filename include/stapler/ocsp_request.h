/* Building an OCSPRequest (RFC 6960 4.1.1) and the HTTP form of it (RFC 6960 A.1, RFC 5019). */
#ifndef STAPLER_OCSP_REQUEST_H
#define STAPLER_OCSP_REQUEST_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* DER OCSPRequest with one SHA-1 CertID for `leaf` issued by `issuer`, no nonce (so CDNs and
 * responders can cache it). The caller frees *out with free(). */
bool ocsp_request_build(X509 *leaf, X509 *issuer, uint8_t **out, size_t *out_len);

/* RFC 5019 2.1.1: use GET when the whole URL (scheme, host, path and encoded request) is at
 * most 255 bytes, so that caches can serve it; POST otherwise. */
#define OCSP_GET_MAX 255

/* Appends to `url`'s path "/" (unless it ends in one) and the URL-escaped base64 of `der`.
 * Returns NULL when the result would be longer than OCSP_GET_MAX; free() the result. */
char *ocsp_request_get_url(const char *url, const uint8_t *der, size_t der_len);

#endif
