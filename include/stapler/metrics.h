/* What the admin endpoint says: Prometheus metrics, health, and a JSON status, all read from
 * the server on the control thread (worker counters are summed, see stats.h). */
#ifndef STAPLER_METRICS_H
#define STAPLER_METRICS_H

#include <stdbool.h>

#include "stapler/strbuf.h"

struct server;

/* Prometheus text format 0.0.4; every name starts with stapler_. */
void metrics_render(const struct server *s, struct strbuf *out);

/* Healthy unless something needs a human: an expired or not yet valid certificate, a revoked
 * one, a must-staple certificate without a valid staple, or a shutdown in progress. `out` gets
 * "ok" or the reasons. */
bool metrics_health(const struct server *s, struct strbuf *out);

/* Certificates and staples as JSON. */
void metrics_status_json(const struct server *s, struct strbuf *out);

#endif
