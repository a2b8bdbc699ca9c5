/* OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED, responseBytes [0] EXPLICIT SEQUENCE {
 *   responseType OID, response OCTET STRING } OPTIONAL }
 * The OCTET STRING holds a BasicOCSPResponse. Everything is strict DER (CBS refuses BER) and
 * trailing bytes anywhere are an error. */
#include "stapler/ocsp_parse.h"

#include <string.h>

#include "stapler/asn1time.h"

/* id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1 */
static const uint8_t kOcspBasicOid[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01};

#define TAG0_EXPLICIT (CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0)
#define TAG1_EXPLICIT (CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 1)
#define TAG2_EXPLICIT (CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 2)

static bool get_generalized_time(CBS *cbs, time_t *out) {
  CBS t;
  return CBS_get_asn1(cbs, &t, CBS_ASN1_GENERALIZEDTIME) &&
         asn1_parse_generalized_time(CBS_data(&t), CBS_len(&t), out);
}

/* Extensions ::= SEQUENCE OF Extension. We act on none, so a critical one means we cannot
 * honour what it is attached to (RFC 5280 4.2): *critical says whether there is one. */
static const char *read_extensions(CBS *exts_wrapper, bool *critical) {
  CBS exts;
  *critical = false;
  if (!CBS_get_asn1(exts_wrapper, &exts, CBS_ASN1_SEQUENCE) || CBS_len(exts_wrapper) != 0)
    return "malformed extensions";
  while (CBS_len(&exts) > 0) {
    CBS ext, oid, value;
    if (!CBS_get_asn1(&exts, &ext, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&ext, &oid, CBS_ASN1_OBJECT))
      return "malformed extension";
    if (CBS_peek_asn1_tag(&ext, CBS_ASN1_BOOLEAN)) {
      CBS b;
      if (!CBS_get_asn1(&ext, &b, CBS_ASN1_BOOLEAN) || CBS_len(&b) != 1 ||
          (CBS_data(&b)[0] != 0xff))
        return "malformed extension criticality"; /* DER: TRUE is 0xff, FALSE is omitted */
      *critical = true;
    }
    if (!CBS_get_asn1(&ext, &value, CBS_ASN1_OCTETSTRING) || CBS_len(&ext) != 0)
      return "malformed extension value";
  }
  return NULL;
}

static const char *parse_cert_id(CBS *single, struct ocsp_single *s) {
  CBS cert_id, alg;
  if (!CBS_get_asn1(single, &cert_id, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&cert_id, &alg, CBS_ASN1_SEQUENCE) ||
      !CBS_get_asn1(&alg, &s->hash_oid, CBS_ASN1_OBJECT))
    return "malformed CertID";
  if (CBS_len(&alg) > 0) { /* parameters: NULL or absent */
    CBS params;
    if (!CBS_get_asn1(&alg, &params, CBS_ASN1_NULL) || CBS_len(&params) != 0 ||
        CBS_len(&alg) != 0)
      return "malformed CertID hash algorithm";
  }
  if (!CBS_get_asn1(&cert_id, &s->name_hash, CBS_ASN1_OCTETSTRING) ||
      !CBS_get_asn1(&cert_id, &s->key_hash, CBS_ASN1_OCTETSTRING) ||
      !CBS_get_asn1_element(&cert_id, &s->serial, CBS_ASN1_INTEGER) || CBS_len(&cert_id) != 0)
    return "malformed CertID";
  return NULL;
}

static const char *parse_cert_status(CBS *single, struct ocsp_single *s) {
  CBS status;
  unsigned tag;
  if (!CBS_get_any_asn1(single, &status, &tag)) return "malformed certStatus";
  s->revocation_reason = -1;
  if (tag == (CBS_ASN1_CONTEXT_SPECIFIC | 0)) {
    if (CBS_len(&status) != 0) return "malformed good status";
    s->status = OCSP_STATUS_GOOD;
  } else if (tag == (CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 1)) {
    s->status = OCSP_STATUS_REVOKED;
    if (!get_generalized_time(&status, &s->revocation_time)) return "malformed revocationTime";
    if (CBS_len(&status) > 0) {
      CBS wrapper, reason;
      if (!CBS_get_asn1(&status, &wrapper, TAG0_EXPLICIT) ||
          !CBS_get_asn1(&wrapper, &reason, CBS_ASN1_ENUMERATED) || CBS_len(&wrapper) != 0 ||
          CBS_len(&reason) != 1 || CBS_len(&status) != 0)
        return "malformed revocationReason";
      s->revocation_reason = CBS_data(&reason)[0];
    }
  } else if (tag == (CBS_ASN1_CONTEXT_SPECIFIC | 2)) {
    if (CBS_len(&status) != 0) return "malformed unknown status";
    s->status = OCSP_STATUS_UNKNOWN;
  } else {
    return "unknown certStatus";
  }
  return NULL;
}

static const char *parse_single(CBS *responses, struct ocsp_single *s) {
  CBS single;
  const char *err;
  if (!CBS_get_asn1(responses, &single, CBS_ASN1_SEQUENCE)) return "malformed SingleResponse";
  if ((err = parse_cert_id(&single, s)) || (err = parse_cert_status(&single, s))) return err;
  if (!get_generalized_time(&single, &s->this_update)) return "malformed thisUpdate";
  s->has_next_update = false;
  if (CBS_peek_asn1_tag(&single, TAG0_EXPLICIT)) {
    CBS wrapper;
    if (!CBS_get_asn1(&single, &wrapper, TAG0_EXPLICIT) ||
        !get_generalized_time(&wrapper, &s->next_update) || CBS_len(&wrapper) != 0)
      return "malformed nextUpdate";
    s->has_next_update = true;
  }
  s->critical_extension = false;
  if (CBS_peek_asn1_tag(&single, TAG1_EXPLICIT)) {
    CBS wrapper;
    if (!CBS_get_asn1(&single, &wrapper, TAG1_EXPLICIT)) return "malformed singleExtensions";
    if ((err = read_extensions(&wrapper, &s->critical_extension))) return err;
  }
  if (CBS_len(&single) != 0) return "trailing data in SingleResponse";
  return NULL;
}

static const char *parse_responder_id(CBS *tbs, struct ocsp_parsed *out) {
  CBS wrapper;
  if (CBS_peek_asn1_tag(tbs, TAG1_EXPLICIT)) {
    if (!CBS_get_asn1(tbs, &wrapper, TAG1_EXPLICIT) ||
        !CBS_get_asn1_element(&wrapper, &out->responder, CBS_ASN1_SEQUENCE) ||
        CBS_len(&wrapper) != 0)
      return "malformed responderID (byName)";
    out->responder_kind = OCSP_RESPONDER_BY_NAME;
  } else if (CBS_peek_asn1_tag(tbs, TAG2_EXPLICIT)) {
    if (!CBS_get_asn1(tbs, &wrapper, TAG2_EXPLICIT) ||
        !CBS_get_asn1(&wrapper, &out->responder, CBS_ASN1_OCTETSTRING) ||
        CBS_len(&wrapper) != 0 || CBS_len(&out->responder) != 20)
      return "malformed responderID (byKey)";
    out->responder_kind = OCSP_RESPONDER_BY_KEY;
  } else {
    return "missing responderID";
  }
  return NULL;
}

static const char *parse_tbs(CBS tbs_element, struct ocsp_parsed *out) {
  CBS tbs, responses;
  const char *err;
  if (!CBS_get_asn1(&tbs_element, &tbs, CBS_ASN1_SEQUENCE)) return "malformed tbsResponseData";
  if (CBS_peek_asn1_tag(&tbs, TAG0_EXPLICIT)) {
    CBS wrapper;
    uint64_t version;
    if (!CBS_get_asn1(&tbs, &wrapper, TAG0_EXPLICIT) ||
        !CBS_get_asn1_uint64(&wrapper, &version) || CBS_len(&wrapper) != 0)
      return "malformed version";
    if (version != 0) return "unsupported response version";
  }
  if ((err = parse_responder_id(&tbs, out))) return err;
  if (!get_generalized_time(&tbs, &out->produced_at)) return "malformed producedAt";
  if (!CBS_get_asn1(&tbs, &responses, CBS_ASN1_SEQUENCE)) return "malformed responses";
  out->single_count = 0;
  while (CBS_len(&responses) > 0) {
    if (out->single_count == OCSP_MAX_SINGLES) return "too many SingleResponses";
    if ((err = parse_single(&responses, &out->singles[out->single_count]))) return err;
    out->single_count++;
  }
  if (out->single_count == 0) return "no SingleResponse";
  if (CBS_peek_asn1_tag(&tbs, TAG1_EXPLICIT)) {
    CBS wrapper;
    bool critical;
    if (!CBS_get_asn1(&tbs, &wrapper, TAG1_EXPLICIT)) return "malformed responseExtensions";
    if ((err = read_extensions(&wrapper, &critical))) return err;
    if (critical) return "unsupported critical extension";
  }
  if (CBS_len(&tbs) != 0) return "trailing data in tbsResponseData";
  return NULL;
}

static const char *parse_certs(CBS *basic, struct ocsp_parsed *out) {
  out->cert_count = 0;
  if (!CBS_peek_asn1_tag(basic, TAG0_EXPLICIT)) return NULL;
  CBS wrapper, seq;
  if (!CBS_get_asn1(basic, &wrapper, TAG0_EXPLICIT) ||
      !CBS_get_asn1(&wrapper, &seq, CBS_ASN1_SEQUENCE) || CBS_len(&wrapper) != 0)
    return "malformed certs";
  while (CBS_len(&seq) > 0) {
    if (out->cert_count == OCSP_MAX_CERTS) return "too many certificates";
    if (!CBS_get_asn1_element(&seq, &out->certs[out->cert_count], CBS_ASN1_SEQUENCE))
      return "malformed certificate";
    out->cert_count++;
  }
  return NULL;
}

static const char *parse_basic(CBS *octets, struct ocsp_parsed *out) {
  CBS basic, tbs_element, bits;
  uint8_t unused_bits;
  const char *err;
  if (!CBS_get_asn1(octets, &basic, CBS_ASN1_SEQUENCE) || CBS_len(octets) != 0)
    return "malformed BasicOCSPResponse";
  if (!CBS_get_asn1_element(&basic, &tbs_element, CBS_ASN1_SEQUENCE))
    return "malformed tbsResponseData";
  out->tbs = tbs_element;
  if ((err = parse_tbs(tbs_element, out))) return err;
  if (!CBS_get_asn1_element(&basic, &out->sig_alg, CBS_ASN1_SEQUENCE))
    return "malformed signatureAlgorithm";
  if (!CBS_get_asn1(&basic, &bits, CBS_ASN1_BITSTRING) || !CBS_get_u8(&bits, &unused_bits) ||
      unused_bits != 0)
    return "malformed signature";
  out->signature = bits;
  if ((err = parse_certs(&basic, out))) return err;
  if (CBS_len(&basic) != 0) return "trailing data in BasicOCSPResponse";
  return NULL;
}

const char *ocsp_parse_response(const uint8_t *der, size_t len, struct ocsp_parsed *out) {
  CBS in, resp, status;
  memset(out, 0, sizeof *out);
  CBS_init(&in, der, len);
  if (!CBS_get_asn1(&in, &resp, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0)
    return "not a DER OCSPResponse";
  if (!CBS_get_asn1(&resp, &status, CBS_ASN1_ENUMERATED) || CBS_len(&status) != 1)
    return "malformed responseStatus";
  out->response_status = CBS_data(&status)[0];
  if (CBS_len(&resp) == 0) return NULL;
  CBS wrapper, bytes, type, octets;
  if (!CBS_get_asn1(&resp, &wrapper, TAG0_EXPLICIT) || CBS_len(&resp) != 0 ||
      !CBS_get_asn1(&wrapper, &bytes, CBS_ASN1_SEQUENCE) || CBS_len(&wrapper) != 0 ||
      !CBS_get_asn1(&bytes, &type, CBS_ASN1_OBJECT) ||
      !CBS_get_asn1(&bytes, &octets, CBS_ASN1_OCTETSTRING) || CBS_len(&bytes) != 0)
    return "malformed responseBytes";
  out->has_bytes = true;
  out->is_basic = CBS_len(&type) == sizeof kOcspBasicOid &&
                  memcmp(CBS_data(&type), kOcspBasicOid, sizeof kOcspBasicOid) == 0;
  if (!out->is_basic) return NULL;
  return parse_basic(&octets, out);
}

const char *ocsp_response_status_name(int status) {
  switch (status) {
  case 0: return "successful";
  case 1: return "malformedRequest";
  case 2: return "internalError";
  case 3: return "tryLater";
  case 5: return "sigRequired";
  case 6: return "unauthorized";
  default: return "unknown response status";
  }
}

const char *ocsp_cert_status_name(enum ocsp_cert_status status) {
  switch (status) {
  case OCSP_STATUS_GOOD: return "good";
  case OCSP_STATUS_REVOKED: return "revoked";
  default: return "unknown";
  }
}
