#include "stapler/stapling.h"

#include <openssl/mem.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stapler/asn1time.h"
#include "stapler/issuer.h"
#include "stapler/log.h"
#include "stapler/ocsp_cache.h"
#include "stapler/ocsp_fetch.h"
#include "stapler/ocsp_request.h"
#include "stapler/ocsp_schedule.h"
#include "stapler/util.h"

static void schedule(struct stapling_job *job);
static void on_timer(uv_timer_t *t);

static uint32_t random32(void) {
  uint32_t r;
  RAND_bytes((uint8_t *)&r, sizeof r);
  return r;
}

static void describe_wait(time_t seconds, char *out, size_t cap) {
  if (seconds < 120)
    snprintf(out, cap, "%llds", (long long)seconds);
  else if (seconds < 7200)
    snprintf(out, cap, "%lldm", (long long)seconds / 60);
  else
    snprintf(out, cap, "%lldh%02lldm", (long long)seconds / 3600, (long long)seconds % 3600 / 60);
}

static void subject_of(X509 *x, char *out, size_t cap) {
  X509_NAME_oneline(X509_get_subject_name(x), out, (int)cap);
}

static const struct config_ocsp *ocsp_cfg(const struct stapling_job *job) {
  return &job->mgr->gen->cfg->ocsp;
}

/* The chain's issuer, or the one found through the caIssuers URL. */
static X509 *job_issuer(const struct stapling_job *job) {
  return job->cert->issuer ? job->cert->issuer : job->issuer;
}

static bool fetching_on(const struct stapling_job *job) {
  return ocsp_cfg(job)->fetch && job->cert->ocsp_url;
}

/* The issuer has yet to be fetched from the caIssuers URL. */
static bool needs_issuer(const struct stapling_job *job) {
  return fetching_on(job) && !job_issuer(job) && job->cert->info.ca_issuers_url;
}

static bool fetchable(const struct stapling_job *job) {
  return fetching_on(job) && job_issuer(job) && job->request;
}

/* (Re)builds the OCSP request for the current certificate and issuer. */
static void prepare_request(struct stapling_job *job) {
  free(job->request);
  job->request = NULL;
  job->request_len = 0;
  X509 *issuer = job_issuer(job);
  if (issuer && !ocsp_request_build(job->cert->leaf, issuer, &job->request, &job->request_len))
    log_error("OCSP %s: cannot build a request", job->cert->label);
}

/* ---- publishing --------------------------------------------------------------------------*/

static void destroy_staple(void *p) { staple_unref(p); }

static void on_reclaim(uv_timer_t *t) {
  struct stapling *s = t->data;
  if (qsbr_reclaim(s->qsbr) == 0) uv_timer_stop(t);
}

/* Makes `staple` (whose reference is taken) the one handshakes send for `c`. */
static void publish(struct stapling *s, struct cert *c, struct staple *staple) {
  qsbr_retire(s->qsbr, cert_swap_staple(c, staple), destroy_staple);
  if (s->qsbr->retired && !s->stopped && !uv_is_active((uv_handle_t *)&s->reclaim_timer))
    uv_timer_start(&s->reclaim_timer, on_reclaim, 1000, 1000);
}

/* ---- outcomes of a fetch -------------------------------------------------------------------*/

/* Counts a failed attempt and plans the next; `wait` says in how long, for the log. */
__attribute__((format(printf, 2, 0))) static void record_failure(struct stapling_job *job,
                                                                 const char *fmt, va_list ap,
                                                                 char *wait, size_t wait_cap) {
  vsnprintf(job->last_error, sizeof job->last_error, fmt, ap);
  job->failures++;
  job->unchanged = false;
  schedule(job);
  describe_wait(job->next_attempt - wall_now(), wait, wait_cap);
}

__attribute__((format(printf, 2, 3))) static void fetch_failed(struct stapling_job *job,
                                                                const char *fmt, ...) {
  char wait[32];
  va_list ap;
  va_start(ap, fmt);
  record_failure(job, fmt, ap, wait, sizeof wait);
  va_end(ap);
  job->fetches_failed++;
  const struct staple *cur = cert_staple(job->cert);
  char keep[80] = "no valid staple to fall back on";
  if (staple_fresh(cur, wall_now())) {
    char until[32];
    format_utc(cur->valid_until, until, sizeof until);
    snprintf(keep, sizeof keep, "keeping the staple valid until %s", until);
  }
  log_warn("OCSP %s: fetch from %s failed (%u in a row): %s; %s; next attempt in %s",
           job->cert->label, job->cert->ocsp_url, job->failures, job->last_error, keep, wait);
}

__attribute__((format(printf, 2, 3))) static void issuer_failed(struct stapling_job *job,
                                                                 const char *fmt, ...) {
  char wait[32];
  va_list ap;
  va_start(ap, fmt);
  record_failure(job, fmt, ap, wait, sizeof wait);
  va_end(ap);
  log_warn("OCSP %s: issuer fetch from %s failed (%u in a row): %s; no staple until it is "
           "found; next attempt in %s",
           job->cert->label, job->cert->info.ca_issuers_url, job->failures, job->last_error,
           wait);
}

static void store_in_cache(struct stapling_job *job, const uint8_t *der, size_t len) {
  if (!job->mgr->cache_ok) return;
  char err[256];
  if (!ocsp_cache_store(ocsp_cfg(job)->cache_dir, job->cert, der, len, err, sizeof err))
    log_warn("OCSP %s: cannot persist the staple: %s", job->cert->label, err);
}

static void log_success(const struct stapling_job *job, const struct ocsp_result *v) {
  char this_update[32], next_update[32], wait[32], until[96] = "";
  format_utc(v->this_update, this_update, sizeof this_update);
  format_utc(v->next_update, next_update, sizeof next_update);
  describe_wait(job->next_attempt - wall_now(), wait, sizeof wait);
  if (v->valid_until < v->next_update) {
    char when[32];
    format_utc(v->valid_until, when, sizeof when);
    snprintf(until, sizeof until, ", valid until %s (when its signer's certificate expires)",
             when);
  }
  if (v->status == OCSP_STATUS_REVOKED) {
    char when[32];
    format_utc(v->revocation_time, when, sizeof when);
    log_error("OCSP %s: the certificate is REVOKED (since %s, reason %d) according to %s; "
              "stapling the CA's answer as given; replace this certificate",
              job->cert->label, when, v->revocation_reason, v->responder);
    return;
  }
  log_info("OCSP %s: good from %s (HTTP 200, signed by %s%s), thisUpdate %s, nextUpdate %s%s; "
           "next refresh in %s",
           job->cert->label, job->cert->ocsp_url, v->delegated ? "delegated responder " : "",
           v->responder, this_update, next_update, until, wait);
}

/* The staple in use, byte for byte: a cache in front of the responder (RFC 5019) serves it
 * until it is stale. The responder works, so this is no failure; the next attempt is planned
 * from the staple's end rather than at once. */
static void same_again(struct stapling_job *job) {
  job->failures = 0;
  job->fetches_ok++;
  job->last_success = wall_now();
  job->last_error[0] = '\0';
  job->unchanged = true;
  schedule(job);
  char wait[32];
  describe_wait(job->next_attempt - wall_now(), wait, sizeof wait);
  log_info("OCSP %s: the responder sent the staple already in use again, as caches in front of "
           "responders do until it is stale; next refresh in %s",
           job->cert->label, wait);
}

static void check_content_type(const struct stapling_job *job, const char *content_type) {
  if (ocsp_media_type_is(content_type, "application/ocsp-response")) return;
  if (content_type[0])
    log_warn("OCSP %s: %s answered with Content-Type '%s', not application/ocsp-response; the "
             "answer is used only if it verifies",
             job->cert->label, job->cert->ocsp_url, content_type);
  else
    log_warn("OCSP %s: %s answered without a Content-Type (application/ocsp-response expected); "
             "the answer is used only if it verifies",
             job->cert->label, job->cert->ocsp_url);
}

static void on_fetched(void *ctx, const struct ocsp_fetch_result *r) {
  struct stapling_job *job = ctx;
  job->fetch = NULL;
  if (!r->ok) {
    fetch_failed(job, "%s", r->error);
    return;
  }
  check_content_type(job, r->content_type);
  struct ocsp_result v;
  enum ocsp_error err =
      ocsp_verify(r->body, r->body_len, job->cert->leaf, job_issuer(job), wall_now(), &v);
  if (err != OCSP_OK) {
    fetch_failed(job, "answer refused (%s): %s", ocsp_error_name(err), v.detail);
    return;
  }
  if (v.status == OCSP_STATUS_UNKNOWN) {
    /* Stapling "unknown" would make some browsers fail hard; keep what we have. */
    fetch_failed(job, "the responder does not know this certificate (status unknown)");
    return;
  }
  const struct staple *cur = cert_staple(job->cert);
  if (cur && cur->len == r->body_len && !memcmp(cur->der, r->body, r->body_len)) {
    same_again(job);
    return;
  }
  if (cur && v.this_update <= cur->this_update) {
    fetch_failed(job, "the answer is not newer than the staple in use");
    return;
  }
  publish(job->mgr, job->cert, staple_new(r->body, r->body_len, &v));
  job->failures = 0;
  job->fetches_ok++;
  job->last_success = wall_now();
  job->last_error[0] = '\0';
  job->expiry_logged = false;
  job->unchanged = false;
  store_in_cache(job, r->body, r->body_len);
  schedule(job);
  log_success(job, &v);
}

/* ---- jobs: cached state ----------------------------------------------------------------------*/

static void load_cached(struct stapling_job *job) {
  struct cert *c = job->cert;
  X509 *issuer = job_issuer(job);
  uint8_t *der;
  size_t len;
  if (!job->mgr->cache_ok || !issuer || !ocsp_cache_load(ocsp_cfg(job)->cache_dir, c, &der, &len))
    return;
  struct ocsp_result v;
  enum ocsp_error err = ocsp_verify(der, len, c->leaf, issuer, wall_now(), &v);
  const struct staple *cur = cert_staple(c);
  if (err != OCSP_OK || v.status == OCSP_STATUS_UNKNOWN) {
    log_info("OCSP %s: cached answer not used: %s", c->label,
             err != OCSP_OK ? v.detail : "status unknown");
  } else if (!cur || v.this_update > cur->this_update) {
    char until[32];
    format_utc(v.valid_until, until, sizeof until);
    log_info("OCSP %s: using the cached answer (%s, valid until %s)", c->label,
             ocsp_cert_status_name(v.status), until);
    publish(job->mgr, c, staple_new(der, len, &v));
    if (v.status == OCSP_STATUS_REVOKED)
      log_error("OCSP %s: the certificate is REVOKED according to the cached answer", c->label);
  }
  free(der);
}

static void store_issuer(struct stapling_job *job, X509 *issuer, char *note, size_t cap) {
  note[0] = '\0';
  if (!job->mgr->cache_ok) return;
  uint8_t *der = NULL;
  int len = i2d_X509(issuer, &der);
  char err[256] = "cannot encode it";
  if (len > 0 && ocsp_cache_store_issuer(ocsp_cfg(job)->cache_dir, job->cert, der, (size_t)len,
                                         err, sizeof err))
    snprintf(note, cap, "; cached in %s", ocsp_cfg(job)->cache_dir);
  else
    snprintf(note, cap, "; not cached: %s", err);
  OPENSSL_free(der);
}

static void on_issuer_fetched(void *ctx, const struct ocsp_fetch_result *r) {
  struct stapling_job *job = ctx;
  job->fetch = NULL;
  job->fetching_issuer = false;
  if (!needs_issuer(job)) { /* a reload gave the chain its issuer meanwhile */
    schedule(job);
    return;
  }
  if (!r->ok) {
    issuer_failed(job, "%s", r->error);
    return;
  }
  char err[256], subject[256], note[300];
  enum issuer_format format;
  X509 *issuer = issuer_from_answer(r->body, r->body_len, job->cert->leaf, &format, err,
                                    sizeof err);
  if (!issuer) {
    issuer_failed(job, "%s", err);
    return;
  }
  job->issuer = issuer;
  job->failures = 0;
  job->last_error[0] = '\0';
  prepare_request(job);
  store_issuer(job, issuer, note, sizeof note);
  subject_of(issuer, subject, sizeof subject);
  log_info("OCSP %s: issuer %s fetched from %s (%s)%s", job->cert->label, subject,
           job->cert->info.ca_issuers_url, issuer_format_name(format), note);
  load_cached(job);
  schedule(job);
}

/* ---- timing ----------------------------------------------------------------------------------*/

static void start_fetch(struct stapling_job *job) {
  char err[256];
  job->last_attempt = wall_now();
  job->scheduled = false;
  job->fetching_issuer = needs_issuer(job);
  if (job->fetching_issuer) {
    const char *url = job->cert->info.ca_issuers_url;
    log_debug("OCSP %s: fetching the issuer from %s", job->cert->label, url);
    job->fetch = ocsp_fetch_get(job->mgr->loop, url, ocsp_cfg(job)->timeout_ms,
                                on_issuer_fetched, job, err, sizeof err);
    if (!job->fetch) issuer_failed(job, "%s", err);
    return;
  }
  log_debug("OCSP %s: fetching from %s", job->cert->label, job->cert->ocsp_url);
  job->fetch = ocsp_fetch_start(job->mgr->loop, job->cert->ocsp_url, job->request,
                                job->request_len, ocsp_cfg(job)->timeout_ms, on_fetched, job,
                                err, sizeof err);
  if (!job->fetch) fetch_failed(job, "%s", err);
}

/* Arms the timer for the next thing due: the attempt, or the staple's expiry (to log it). */
static void arm(struct stapling_job *job) {
  const struct staple *cur = cert_staple(job->cert);
  uint64_t now_ms = wall_now_ms();
  time_t wake = job->next_attempt;
  if (cur && (uint64_t)cur->valid_until * 1000 > now_ms && !job->expiry_logged)
    wake = MIN(wake, cur->valid_until);
  uint64_t wake_ms = (uint64_t)wake * 1000;
  uint64_t delay = wake_ms > now_ms ? wake_ms - now_ms : 0;
  log_debug("OCSP %s: next attempt at %lld, timer in %llu ms", job->cert->label,
            (long long)job->next_attempt, (unsigned long long)delay);
  uv_timer_start(&job->timer, on_timer, delay, 0);
  job->scheduled = true;
}

static void log_expiry(struct stapling_job *job, const struct staple *cur) {
  char when[32];
  format_utc(cur->valid_until, when, sizeof when);
  log_error("OCSP %s: the staple expired at %s%s and no newer answer could be fetched; "
            "handshakes go on %s (policy %s)",
            job->cert->label, when,
            cur->valid_until < cur->next_update ? " (its signer's certificate expired)" : "",
            job->cert->policy == OCSP_POLICY_LENIENT ? "without a staple"
                                                     : "refusing clients that ask for one",
            config_policy_name(job->cert->policy));
  job->expiry_logged = true;
}

/* libuv timers may fire a little before the wall clock reaches the moment they were set for. */
#define TIMER_SLACK_MS 50

static void on_timer(uv_timer_t *t) {
  struct stapling_job *job = t->data;
  uint64_t now_ms = wall_now_ms() + TIMER_SLACK_MS;
  const struct staple *cur = cert_staple(job->cert);
  if (cur && now_ms >= (uint64_t)cur->valid_until * 1000 && !job->expiry_logged)
    log_expiry(job, cur);
  if (now_ms >= (uint64_t)job->next_attempt * 1000 && !job->fetch)
    start_fetch(job);
  else if (!job->fetch)
    arm(job);
}

/* Decides when to try next from the current state, then arms the timer. */
static void schedule(struct stapling_job *job) {
  if (job->mgr->stopped || job->fetch) return;
  if (!fetchable(job) && !needs_issuer(job)) {
    uv_timer_stop(&job->timer);
    job->scheduled = false;
    return;
  }
  const struct staple *cur = cert_staple(job->cert);
  struct ocsp_schedule_in in = {.have_staple = cur != NULL, .failures = job->failures,
                                .unchanged = job->unchanged};
  if (cur) {
    in.this_update = cur->this_update;
    in.next_update = cur->valid_until;
  }
  job->next_attempt = ocsp_schedule_next(&in, wall_now(), random32());
  arm(job);
}

/* ---- jobs ------------------------------------------------------------------------------------*/

static void log_unusable_url(const struct cert *c) {
  const char *url = c->info.ocsp_url_unusable;
  if (!strncasecmp(url, "https://", 8))
    log_warn("OCSP %s: the OCSP URL %s uses https, which OCSP does not need (RFC 6960 A.1: the "
             "answer is signed) and stapler does not fetch; served without a staple unless "
             "ocsp_url: names the responder's http:// URL", c->label, url);
  else
    log_warn("OCSP %s: the OCSP URL %s is not an http:// URL; served without a staple unless "
             "ocsp_url: names the responder's http:// URL", c->label, url);
}

/* Says once, when a certificate is first seen, how its stapling will go. */
static void describe(const struct stapling_job *job) {
  const struct cert *c = job->cert;
  char subject[256];
  if (!c->ocsp_url && c->info.ocsp_url_unusable) {
    log_unusable_url(c);
  } else if (!c->ocsp_url) {
    log_info("OCSP %s: no OCSP URL in the certificate: served without a staple", c->label);
  } else if (c->issuer_source == CERT_ISSUER_CACHE) {
    subject_of(c->issuer, subject, sizeof subject);
    log_info("OCSP %s: using the cached issuer %s (fetched earlier from %s)", c->label, subject,
             c->info.ca_issuers_url);
  } else if (needs_issuer(job)) {
    log_info("OCSP %s: the chain holds the leaf alone: its issuer is fetched from %s", c->label,
             c->info.ca_issuers_url);
  } else if (!job_issuer(job)) {
    log_warn("OCSP %s: the chain has no issuer certificate%s, so no staple can be verified; "
             "put the issuer after the leaf in the file",
             c->label, c->info.ca_issuers_url ? "" : " and the certificate no caIssuers URL");
  }
}

static struct stapling_job *new_job(struct stapling *s, struct cert *c) {
  struct stapling_job *job = xcalloc(1, sizeof *job);
  job->mgr = s;
  job->cert = c;
  memcpy(job->fingerprint, c->fingerprint, sizeof job->fingerprint);
  uv_timer_init(s->loop, &job->timer);
  job->timer.data = job;
  prepare_request(job);
  describe(job);
  job->next = s->jobs;
  s->jobs = job;
  return job;
}

static void free_job_memory(struct stapling_job *job) {
  X509_free(job->issuer);
  free(job->request);
  free(job);
}

static void free_job(uv_handle_t *h) { free_job_memory(h->data); }

static void drop_job(struct stapling_job *job) {
  ocsp_fetch_cancel(job->fetch);
  job->fetch = NULL;
  uv_close((uv_handle_t *)&job->timer, free_job);
}

static struct stapling_job *find_job(struct stapling *s, const uint8_t fingerprint[32]) {
  for (struct stapling_job *j = s->jobs; j; j = j->next)
    if (!memcmp(j->fingerprint, fingerprint, 32)) return j;
  return NULL;
}

/* The same certificate in a new generation: carry the staple over unless the new one (from a
 * static file) is newer. The chain file may have gained or changed the issuer: the request is
 * built again for it, and a certificate that could not be stapled before starts with its
 * cached answer. */
static void rebind(struct stapling_job *job, struct cert *c) {
  const struct staple *old = cert_staple(job->cert);
  const struct staple *mine = cert_staple(c);
  if (old && (!mine || old->this_update > mine->this_update))
    publish(job->mgr, c, staple_ref((struct staple *)old));
  bool had_request = job->request != NULL;
  job->cert = c;
  prepare_request(job);
  if (!had_request && job->request) {
    log_info("OCSP %s: the issuer is known now: stapling starts", c->label);
    load_cached(job);
  }
}

static void prepare_cache(struct stapling *s, const struct config_ocsp *o) {
  s->cache_ok = false;
  if (!o->fetch || !o->cache_dir) return;
  char err[512];
  s->cache_ok = ocsp_cache_prepare(o->cache_dir, err, sizeof err);
  if (!s->cache_ok)
    log_warn("OCSP cache disabled: %s (staples will not survive a restart)", err);
}

void stapling_attach(struct stapling *s, struct generation *gen) {
  struct generation *old_gen = s->gen;
  s->gen = generation_ref(gen);
  prepare_cache(s, &gen->cfg->ocsp);
  for (struct stapling_job *j = s->jobs; j; j = j->next) j->seen = false;
  for (size_t i = 0; i < gen->certs->cert_count; i++) {
    struct cert *c = gen->certs->certs[i];
    struct stapling_job *job = find_job(s, c->fingerprint);
    if (job) {
      rebind(job, c);
    } else {
      job = new_job(s, c);
      load_cached(job);
    }
    job->seen = true;
  }
  for (struct stapling_job **pp = &s->jobs; *pp;) {
    struct stapling_job *job = *pp;
    if (job->seen) {
      schedule(job);
      pp = &job->next;
    } else {
      *pp = job->next;
      drop_job(job);
    }
  }
  if (old_gen) generation_unref(old_gen);
}

void stapling_init(struct stapling *s, uv_loop_t *loop, struct qsbr *qsbr) {
  memset(s, 0, sizeof *s);
  s->loop = loop;
  s->qsbr = qsbr;
  uv_timer_init(loop, &s->reclaim_timer);
  s->reclaim_timer.data = s;
}

void stapling_republish(struct stapling *s) {
  for (struct stapling_job *job = s->jobs; job; job = job->next) {
    const struct staple *cur = cert_staple(job->cert);
    if (cur) publish(s, job->cert, staple_copy(cur));
  }
  qsbr_reclaim(s->qsbr);
}

void stapling_stop(struct stapling *s) {
  if (s->stopped) return;
  s->stopped = true;
  for (struct stapling_job *j = s->jobs; j; j = j->next) {
    ocsp_fetch_cancel(j->fetch);
    j->fetch = NULL;
    j->scheduled = false;
    uv_close((uv_handle_t *)&j->timer, NULL);
  }
  uv_close((uv_handle_t *)&s->reclaim_timer, NULL);
}

void stapling_free(struct stapling *s) {
  while (s->jobs) {
    struct stapling_job *j = s->jobs;
    s->jobs = j->next;
    free_job_memory(j);
  }
  if (s->gen) generation_unref(s->gen);
  s->gen = NULL;
}
