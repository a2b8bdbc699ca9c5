/* Structural parsing of a DER OCSPResponse (RFC 6960 4.2.1) with CBS, no crypto.
 * The parsed form points into the caller's buffer, which must outlive it. */
#ifndef STAPLER_OCSP_PARSE_H
#define STAPLER_OCSP_PARSE_H

#include <openssl/bytestring.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define OCSP_MAX_SINGLES 64
#define OCSP_MAX_CERTS 8

enum ocsp_cert_status { OCSP_STATUS_GOOD, OCSP_STATUS_REVOKED, OCSP_STATUS_UNKNOWN };
enum ocsp_responder_kind { OCSP_RESPONDER_BY_NAME = 1, OCSP_RESPONDER_BY_KEY = 2 };

struct ocsp_single {
  CBS hash_oid;   /* CertID.hashAlgorithm's OID contents */
  CBS name_hash;  /* CertID.issuerNameHash contents */
  CBS key_hash;   /* CertID.issuerKeyHash contents */
  CBS serial;     /* CertID.serialNumber, whole INTEGER element */
  enum ocsp_cert_status status;
  time_t this_update;
  bool has_next_update;
  time_t next_update;
  time_t revocation_time;
  int revocation_reason; /* CRLReason, or -1 when absent */
  bool critical_extension; /* a singleExtension is critical: only usable by who knows it */
};

struct ocsp_parsed {
  int response_status; /* 0 successful; see ocsp_response_status_name() */
  bool has_bytes;      /* responseBytes present */
  bool is_basic;       /* responseType is id-pkix-ocsp-basic */
  CBS tbs;             /* tbsResponseData, whole element: the signed bytes */
  enum ocsp_responder_kind responder_kind;
  CBS responder;       /* byName: the Name element; byKey: the SHA-1 key hash contents */
  time_t produced_at;
  struct ocsp_single singles[OCSP_MAX_SINGLES];
  size_t single_count;
  CBS sig_alg;         /* signatureAlgorithm, whole AlgorithmIdentifier element */
  CBS signature;       /* signature BIT STRING contents after the unused-bits octet */
  CBS certs[OCSP_MAX_CERTS]; /* whole Certificate elements */
  size_t cert_count;
};

/* Returns NULL on success or a short description of what is malformed. A response whose status
 * is not successful parses fine (has_bytes false); the verifier refuses it. So does a critical
 * singleExtension (flagged in its ocsp_single): it concerns that certificate alone, so it is
 * refused only in the answer for the certificate being verified. */
const char *ocsp_parse_response(const uint8_t *der, size_t len, struct ocsp_parsed *out);

const char *ocsp_response_status_name(int status);
const char *ocsp_cert_status_name(enum ocsp_cert_status status);

#endif
