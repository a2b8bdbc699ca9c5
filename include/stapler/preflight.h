/* What a configuration needs from the machine it runs on, checked before it is used: enough
 * file descriptors for limits.max_connections, listen and admin addresses nobody else holds,
 * the right to bind privileged ports, a writable OCSP cache. The same checks serve the start
 * (as log lines) and `stapler -t` (as problems), so the check says what the start would. */
#ifndef STAPLER_PREFLIGHT_H
#define STAPLER_PREFLIGHT_H

#include <stdint.h>

#include "stapler/config.h"
#include "stapler/strlist.h"

/* File descriptors the configuration needs at most: two per proxied connection, plus each
 * worker's loop and listeners, the admin endpoint, OCSP fetches and logging. */
uint64_t preflight_fds_needed(const struct config *cfg, unsigned workers);

/* The open-file limit against what `cfg` needs: a warning when it does not fit. */
void preflight_fd_limit(const struct config *cfg, unsigned workers, uint64_t limit,
                        struct strlist *warnings);

/* Listen and admin addresses: in use by another process (a running stapler holding them is
 * noted as fine for a reload of it), or privileged without the right to bind them. */
void preflight_addresses(const struct config *cfg, struct strlist *errors,
                         struct strlist *warnings);

/* ocsp.cache_dir exists and is writable, or can be created. */
void preflight_cache_dir(const struct config *cfg, struct strlist *errors);

/* A hint for a failed bind of `addr` (errno `err`): what to do about it, or "". */
const char *preflight_bind_hint(const struct config_addr *addr, int err);

#endif
