#include "stapler/stapling.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/asn1time.h"
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

static const struct config_ocsp *ocsp_cfg(const struct stapling_job *job) {
  return &job->mgr->gen->cfg->ocsp;
}

static bool fetchable(const struct stapling_job *job) {
  return ocsp_cfg(job)->fetch && job->cert->ocsp_url && job->cert->issuer && job->request;
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

__attribute__((format(printf, 2, 3))) static void fetch_failed(struct stapling_job *job,
                                                                const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(job->last_error, sizeof job->last_error, fmt, ap);
  va_end(ap);
  job->failures++;
  job->fetches_failed++;
  schedule(job);
  time_t now = wall_now();
  const struct staple *cur = cert_staple(job->cert);
  char keep[80] = "no valid staple to fall back on", wait[32];
  if (staple_fresh(cur, now)) {
    char until[32];
    format_utc(cur->next_update, until, sizeof until);
    snprintf(keep, sizeof keep, "keeping the staple valid until %s", until);
  }
  describe_wait(job->next_attempt - now, wait, sizeof wait);
  log_warn("OCSP %s: fetch from %s failed (%u in a row): %s; %s; next attempt in %s",
           job->cert->label, job->cert->ocsp_url, job->failures, job->last_error, keep, wait);
}

static void store_in_cache(struct stapling_job *job, const uint8_t *der, size_t len) {
  if (!job->mgr->cache_ok) return;
  char err[256];
  if (!ocsp_cache_store(ocsp_cfg(job)->cache_dir, job->cert, der, len, err, sizeof err))
    log_warn("OCSP %s: cannot persist the staple: %s", job->cert->label, err);
}

static void log_success(const struct stapling_job *job, const struct ocsp_result *v) {
  char this_update[32], next_update[32], wait[32];
  format_utc(v->this_update, this_update, sizeof this_update);
  format_utc(v->next_update, next_update, sizeof next_update);
  describe_wait(job->next_attempt - wall_now(), wait, sizeof wait);
  if (v->status == OCSP_STATUS_REVOKED) {
    char when[32];
    format_utc(v->revocation_time, when, sizeof when);
    log_error("OCSP %s: the certificate is REVOKED (since %s, reason %d) according to %s; "
              "stapling the CA's answer as given; replace this certificate",
              job->cert->label, when, v->revocation_reason, v->responder);
    return;
  }
  log_info("OCSP %s: good from %s (HTTP 200, signed by %s%s), thisUpdate %s, nextUpdate %s; "
           "next refresh in %s",
           job->cert->label, job->cert->ocsp_url, v->delegated ? "delegated responder " : "",
           v->responder, this_update, next_update, wait);
}

static void on_fetched(void *ctx, const struct ocsp_fetch_result *r) {
  struct stapling_job *job = ctx;
  job->fetch = NULL;
  if (!r->ok) {
    fetch_failed(job, "%s", r->error);
    return;
  }
  struct ocsp_result v;
  enum ocsp_error err =
      ocsp_verify(r->body, r->body_len, job->cert->leaf, job->cert->issuer, wall_now(), &v);
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
  store_in_cache(job, r->body, r->body_len);
  schedule(job);
  log_success(job, &v);
}

/* ---- timing ----------------------------------------------------------------------------------*/

static void start_fetch(struct stapling_job *job) {
  char err[256];
  job->last_attempt = wall_now();
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
  if (cur && (uint64_t)cur->next_update * 1000 > now_ms && !job->expiry_logged)
    wake = MIN(wake, cur->next_update);
  uint64_t wake_ms = (uint64_t)wake * 1000;
  uint64_t delay = wake_ms > now_ms ? wake_ms - now_ms : 0;
  log_debug("OCSP %s: next attempt at %lld, timer in %llu ms", job->cert->label,
            (long long)job->next_attempt, (unsigned long long)delay);
  uv_timer_start(&job->timer, on_timer, delay, 0);
}

static void log_expiry(struct stapling_job *job, const struct staple *cur) {
  char when[32];
  format_utc(cur->next_update, when, sizeof when);
  log_error("OCSP %s: the staple expired at %s and no newer answer could be fetched; "
            "handshakes go on %s (policy %s)",
            job->cert->label, when,
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
  if (cur && now_ms >= (uint64_t)cur->next_update * 1000 && !job->expiry_logged)
    log_expiry(job, cur);
  if (now_ms >= (uint64_t)job->next_attempt * 1000 && !job->fetch)
    start_fetch(job);
  else if (!job->fetch)
    arm(job);
}

/* Decides when to try next from the current state, then arms the timer. */
static void schedule(struct stapling_job *job) {
  if (job->mgr->stopped || job->fetch) return;
  if (!fetchable(job)) {
    uv_timer_stop(&job->timer);
    return;
  }
  const struct staple *cur = cert_staple(job->cert);
  struct ocsp_schedule_in in = {.have_staple = cur != NULL, .failures = job->failures};
  if (cur) {
    in.this_update = cur->this_update;
    in.next_update = cur->next_update;
  }
  job->next_attempt = ocsp_schedule_next(&in, wall_now(), random32());
  arm(job);
}

/* ---- jobs ------------------------------------------------------------------------------------*/

static void load_cached(struct stapling_job *job) {
  struct cert *c = job->cert;
  uint8_t *der;
  size_t len;
  if (!job->mgr->cache_ok || !c->issuer ||
      !ocsp_cache_load(ocsp_cfg(job)->cache_dir, c, &der, &len))
    return;
  struct ocsp_result v;
  enum ocsp_error err = ocsp_verify(der, len, c->leaf, c->issuer, wall_now(), &v);
  const struct staple *cur = cert_staple(c);
  if (err != OCSP_OK || v.status == OCSP_STATUS_UNKNOWN) {
    log_info("OCSP %s: cached answer not used: %s", c->label,
             err != OCSP_OK ? v.detail : "status unknown");
  } else if (!cur || v.this_update > cur->this_update) {
    char until[32];
    format_utc(v.next_update, until, sizeof until);
    log_info("OCSP %s: using the cached answer (%s, valid until %s)", c->label,
             ocsp_cert_status_name(v.status), until);
    publish(job->mgr, c, staple_new(der, len, &v));
    if (v.status == OCSP_STATUS_REVOKED)
      log_error("OCSP %s: the certificate is REVOKED according to the cached answer", c->label);
  }
  free(der);
}

static struct stapling_job *new_job(struct stapling *s, struct cert *c) {
  struct stapling_job *job = xcalloc(1, sizeof *job);
  job->mgr = s;
  job->cert = c;
  memcpy(job->fingerprint, c->fingerprint, sizeof job->fingerprint);
  uv_timer_init(s->loop, &job->timer);
  job->timer.data = job;
  if (c->issuer && !ocsp_request_build(c->leaf, c->issuer, &job->request, &job->request_len))
    log_error("OCSP %s: cannot build a request", c->label);
  if (!c->ocsp_url)
    log_info("OCSP %s: no OCSP URL in the certificate: served without a staple", c->label);
  else if (!c->issuer)
    log_warn("OCSP %s: the chain has no issuer certificate, so no staple can be verified",
             c->label);
  job->next = s->jobs;
  s->jobs = job;
  return job;
}

static void free_job(uv_handle_t *h) {
  struct stapling_job *job = h->data;
  free(job->request);
  free(job);
}

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
 * static file) is newer. */
static void rebind(struct stapling_job *job, struct cert *c) {
  const struct staple *old = cert_staple(job->cert);
  const struct staple *mine = cert_staple(c);
  if (old && (!mine || old->this_update > mine->this_update))
    publish(job->mgr, c, staple_ref((struct staple *)old));
  job->cert = c;
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
    uv_close((uv_handle_t *)&j->timer, NULL);
  }
  uv_close((uv_handle_t *)&s->reclaim_timer, NULL);
}

void stapling_free(struct stapling *s) {
  while (s->jobs) {
    struct stapling_job *j = s->jobs;
    s->jobs = j->next;
    free(j->request);
    free(j);
  }
  if (s->gen) generation_unref(s->gen);
  s->gen = NULL;
}
