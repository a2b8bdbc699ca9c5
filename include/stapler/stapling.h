/* Automatic OCSP stapling: for every certificate with an OCSP URL and an issuer, keep a fresh,
 * verified staple. Runs on the control thread's loop; workers see each new staple through an
 * atomic pointer swap (see cert.h, qsbr.h).
 *
 * Per certificate (a "job", keyed by the certificate's SHA-256 so state survives reloads): load
 * the cached response at start, fetch at the times ocsp_schedule.h gives, verify every answer
 * fully, publish it, persist it, log each fetch and its outcome. The last good staple stays in
 * use until it expires (its nextUpdate, or its delegated signer's notAfter when earlier)
 * whatever the responder does; it is never served after.
 *
 * A chain file holding the leaf alone gets its issuer from the leaf's caIssuers URL (see
 * issuer.h), fetched here like an answer, cached beside the staples and used by later starts
 * (cert_load reads it back). A reload that changes a certificate's issuer rebuilds its request. */
#ifndef STAPLER_STAPLING_H
#define STAPLER_STAPLING_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "stapler/generation.h"
#include "stapler/qsbr.h"

struct ocsp_fetch;

/* What is known about one certificate's stapling; read by the admin endpoint. */
struct stapling_job {
  struct stapling *mgr;
  struct stapling_job *next;
  uint8_t fingerprint[32];
  struct cert *cert; /* in the attached generation */
  X509 *issuer;      /* found through the caIssuers URL when the chain has none; owned */
  uv_timer_t timer;
  struct ocsp_fetch *fetch; /* in flight (the issuer's when fetching_issuer), or NULL */
  uint8_t *request;         /* DER OCSPRequest for this certificate, once its issuer is known */
  size_t request_len;
  time_t next_attempt, last_attempt, last_success;
  unsigned failures;        /* consecutive */
  uint64_t fetches_ok, fetches_failed;
  char last_error[256];
  bool expiry_logged, seen;
  bool fetching_issuer;
  bool unchanged; /* the last answer was the staple already in use, byte for byte */
  bool scheduled; /* the timer is armed for next_attempt */
};

struct stapling {
  uv_loop_t *loop;
  struct qsbr *qsbr;
  struct generation *gen;
  struct stapling_job *jobs;
  uv_timer_t reclaim_timer; /* frees replaced staples once workers are past them */
  bool cache_ok;
  bool stopped;
};

void stapling_init(struct stapling *s, uv_loop_t *loop, struct qsbr *qsbr);
/* Looks after `gen`'s certificates from now on (a reference is taken). */
void stapling_attach(struct stapling *s, struct generation *gen);
/* Cancels fetches and closes the timers; the loop can then finish. */
/* Replaces every current staple with an equal copy, retiring the old ones: tests use it to
 * race handshakes against reclamation (STAPLER_TEST_CHURN_MS). */
void stapling_republish(struct stapling *s);
void stapling_stop(struct stapling *s);
/* Frees everything; after the loop has run the close callbacks. */
void stapling_free(struct stapling *s);

#endif
