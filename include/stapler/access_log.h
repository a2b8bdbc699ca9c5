/* One access log line per HTTP exchange (http mode) or per connection (tunnels), when
 * log.access is on. */
#ifndef STAPLER_ACCESS_LOG_H
#define STAPLER_ACCESS_LOG_H

struct conn;

/* The exchange that just ended with `status` (a response from the backend or stapler's own). */
void access_log_exchange(const struct conn *c, int status);
/* A tunnel (tcp mode or an upgraded HTTP connection) that just closed. */
void access_log_tunnel(const struct conn *c);

#endif
