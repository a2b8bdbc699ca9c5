/* The validated configuration: the YAML file (or the embedded default) turned into plain data.
 * A struct config is immutable once loaded; it is owned by whoever called config_load(). */
#ifndef STAPLER_CONFIG_H
#define STAPLER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "stapler/log.h"
#include "stapler/strlist.h"

/* A network endpoint: host:port (resolved when the config is loaded) or unix:/path. */
struct config_addr {
  char *text;      /* as written, for messages */
  char *host;      /* host part, or NULL for unix sockets */
  uint16_t port;
  char *unix_path; /* non-NULL for unix:/path */
  struct sockaddr_storage ss;
  socklen_t ss_len;
};

struct config_listen {
  struct config_addr addr;
  bool proxy_protocol;
  bool reuse_port; /* another process may listen on the same address (SO_REUSEPORT) */
};

enum backend_mode { BACKEND_MODE_HTTP, BACKEND_MODE_TCP };
enum proxy_protocol { PROXY_PROTOCOL_OFF, PROXY_PROTOCOL_V1, PROXY_PROTOCOL_V2 };

struct config_backend {
  struct config_addr addr;
  enum backend_mode mode;
  enum proxy_protocol proxy_protocol;
  bool forwarded_headers;
  uint64_t connect_timeout_ms;
  uint64_t keepalive_ms; /* idle backend connections are reused this long; 0: never */
  char **upgrades;       /* Upgrade protocol names that may become tunnels, lowercase */
  size_t upgrade_count;
};

struct config_cert {
  char *cert;          /* absolute or config-relative path, resolved */
  char *key;
  char *ocsp_response; /* optional */
  char *ocsp_url;      /* optional */
  int line, column;    /* where the entry starts, for messages */
};

struct config_tls {
  uint16_t min_version; /* TLS1_2_VERSION or TLS1_3_VERSION */
  char **alpn;       /* offered in this order of preference; default [h2, http/1.1] in
                        http mode, [http/1.1] in tcp mode */
  size_t alpn_count;
  bool alpn_given;   /* the file set tls.alpn */
  bool session_tickets;
  char *ticket_key_file; /* optional */
};

enum ocsp_policy { OCSP_POLICY_LENIENT, OCSP_POLICY_STRICT, OCSP_POLICY_MUST_STAPLE };

struct config_ocsp {
  bool fetch;
  char *cache_dir;
  enum ocsp_policy policy;
  uint64_t timeout_ms;
};

struct config_timeouts {
  uint64_t handshake_ms, request_header_ms, idle_ms, shutdown_ms;
};

struct config_limits {
  uint32_t max_connections;
  uint32_t max_header_bytes;
};

struct config_admin {
  bool enabled;
  struct config_addr addr;
};

struct config_log {
  enum log_level level;
  enum log_format format;
  bool access;
};

struct config {
  char *path; /* NULL for the embedded default */
  struct config_listen *listen;
  size_t listen_count;
  struct config_backend backend;
  struct config_cert *certs;
  size_t cert_count;
  char *default_name; /* NULL: the first name of the first certificate */
  struct config_tls tls;
  struct config_ocsp ocsp;
  unsigned workers; /* 0 means auto: one per core */
  struct config_timeouts timeouts;
  struct config_limits limits;
  struct config_admin admin;
  struct config_log log;
};

/* Loads and validates `path`. On failure returns NULL and appends one message per problem to
 * `errors`, each starting with FILE:LINE:COLUMN. */
struct config *config_load(const char *path, struct strlist *errors);

/* Loads from a YAML text in memory; `name` is used in messages and `dir` for relative paths. */
struct config *config_load_string(const char *name, const char *dir, const char *yaml, size_t len,
                                  struct strlist *errors);

/* The embedded default: 127.0.0.1:8443 -> 127.0.0.1:4000, no certificate files (the caller
 * generates self-signed ones). */
struct config *config_default(void);

void config_free(struct config *cfg);

/* The most worker threads a process runs (`workers:`, and what auto may choose). */
#define CONFIG_MAX_WORKERS 256

/* Number of workers to run: `workers`, or the number of usable cores for auto. */
unsigned config_worker_count(const struct config *cfg);

const char *config_policy_name(enum ocsp_policy policy);

#endif
