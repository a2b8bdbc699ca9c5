/* One access log line per exchange (an HTTP request and its response) or per tunnel (tcp
 * mode, or an upgraded connection, when it closes), when log.access is on. */
#ifndef STAPLER_ACCESS_LOG_H
#define STAPLER_ACCESS_LOG_H

struct session;
struct exchange_record;
struct http_head;

/* `req` may be NULL (nothing of a request was understood); `protocol` is "http/1.1" or "h2". */
void access_log_exchange(const struct session *s, const struct exchange_record *r,
                         const struct http_head *req, const char *protocol);
/* `mode` is "tcp" or "upgrade". */
void access_log_tunnel(const struct session *s, const struct exchange_record *r,
                       const char *mode);

#endif
