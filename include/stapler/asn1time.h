/* UTCTime and GeneralizedTime (as found in certificates and OCSP responses) to time_t.
 * This BoringSSL has neither CBS_parse_generalized_time nor ASN1_TIME_to_posix. */
#ifndef STAPLER_ASN1TIME_H
#define STAPLER_ASN1TIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The content octets of a GeneralizedTime: YYYYMMDDHHMMSS[.fff]Z. Fractions are dropped. */
bool asn1_parse_generalized_time(const uint8_t *s, size_t len, time_t *out);
/* The content octets of a UTCTime: YYMMDDHHMMSSZ, years 50..99 meaning 19xx (RFC 5280). */
bool asn1_parse_utc_time(const uint8_t *s, size_t len, time_t *out);

/* Formats as 2026-11-22T10:00:00Z into `out` (at least 21 bytes). */
void format_utc(time_t t, char *out, size_t cap);

#endif
