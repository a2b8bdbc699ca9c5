/* The issuer of a leaf whose chain file holds it alone, from what its authorityInfoAccess
 * caIssuers URL serves (RFC 5280 4.2.2.1): one DER certificate, or a certs-only PKCS#7 bundle.
 * Only a certificate that verifiably signed the leaf is taken. */
#ifndef STAPLER_ISSUER_H
#define STAPLER_ISSUER_H

#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

enum issuer_format { ISSUER_FORMAT_DER, ISSUER_FORMAT_PKCS7 };

/* The certificate in `body` that signed `leaf` (a new reference), and how it came. NULL with
 * `err` saying why when there is none. */
X509 *issuer_from_answer(const uint8_t *body, size_t len, X509 *leaf, enum issuer_format *format,
                         char *err, size_t err_len);

/* "DER", "PKCS#7" */
const char *issuer_format_name(enum issuer_format format);

#endif
