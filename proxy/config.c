/* The configuration schema: which keys exist, their types and defaults, and the checks that
 * span several keys. Value parsing lives in yamlcfg.c. */
#include "stapler/config.h"

#include <libgen.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "stapler/http_head.h"
#include "stapler/util.h"
#include "stapler/yamlcfg.h"

#define MAX_CONFIG_BYTES (1024 * 1024)

/* Before the file is read the mode is not known: the defaults are for http mode, and
 * tcp mode drops h2 unless the file names it (see check_whole). */
static void set_default_alpn(struct config *cfg) {
  cfg->tls.alpn = xmalloc(2 * sizeof(char *));
  cfg->tls.alpn[0] = xstrdup("h2");
  cfg->tls.alpn[1] = xstrdup("http/1.1");
  cfg->tls.alpn_count = 2;
}

static void set_default_upgrades(struct config *cfg) {
  cfg->backend.upgrades = xmalloc(sizeof(char *));
  cfg->backend.upgrades[0] = xstrdup("websocket");
  cfg->backend.upgrade_count = 1;
}

static void set_defaults(struct config *cfg) {
  set_default_alpn(cfg);
  set_default_upgrades(cfg);
  cfg->backend.keepalive_ms = 4000;
  cfg->backend.mode = BACKEND_MODE_HTTP;
  cfg->backend.proxy_protocol = PROXY_PROTOCOL_OFF;
  cfg->backend.forwarded_headers = true;
  cfg->backend.connect_timeout_ms = 5000;
  cfg->tls.min_version = TLS1_2_VERSION;
  cfg->tls.session_tickets = true;
  cfg->ocsp.fetch = true;
  cfg->ocsp.cache_dir = xstrdup("/var/cache/stapler");
  cfg->ocsp.policy = OCSP_POLICY_LENIENT;
  cfg->ocsp.timeout_ms = 10000;
  cfg->workers = 0;
  cfg->timeouts = (struct config_timeouts){.handshake_ms = 10000,
                                           .request_header_ms = 30000,
                                           .idle_ms = 300000,
                                           .shutdown_ms = 30000};
  cfg->limits = (struct config_limits){.max_connections = 20000, .max_header_bytes = 32768};
  cfg->log = (struct config_log){.level = LOG_INFO, .format = LOG_FORMAT_TEXT, .access = true};
}

/* ---- sections --------------------------------------------------------------------------------*/

static void parse_listen_entry(struct ycfg *y, yaml_node_t *node, const char *key,
                               struct config_listen *l) {
  const struct ycfg_field fields[] = {
      {"address", ycfg_address, &l->addr},
      {"proxy_protocol", ycfg_bool, &l->proxy_protocol},
      {"reuse_port", ycfg_bool, &l->reuse_port},
  };
  ycfg_mapping(y, node, key, fields, ARRAY_SIZE(fields));
  if (node->type == YAML_MAPPING_NODE && !ycfg_has_key(y, node, "address"))
    ycfg_error(y, node, key, "missing key 'address' (host:port)");
}

static void parse_listen(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  struct config *cfg = target;
  if (node->type != YAML_SEQUENCE_NODE) {
    ycfg_error(y, node, key, "expected a list of {address: host:port}");
    return;
  }
  size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
  if (n == 0) {
    ycfg_error(y, node, key, "expected at least one address to listen on");
    return;
  }
  cfg->listen = xcalloc(n, sizeof *cfg->listen);
  cfg->listen_count = n;
  for (size_t i = 0; i < n; i++) {
    char sub[64];
    snprintf(sub, sizeof sub, "%s[%zu]", key, i);
    parse_listen_entry(y, ycfg_child(y, node->data.sequence.items.start[i]), sub, &cfg->listen[i]);
  }
}

static void parse_backend_mode(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  static const char *const names[] = {"http", "tcp"};
  int i = ycfg_enum(y, node, key, names, ARRAY_SIZE(names));
  if (i >= 0) *(enum backend_mode *)target = (enum backend_mode)i;
}

static void parse_proxy_protocol(struct ycfg *y, yaml_node_t *node, const char *key,
                                 void *target) {
  /* "false" is what YAML users write for "off"; accept it as the same thing. */
  static const char *const names[] = {"off", "v1", "v2", "false"};
  int i = ycfg_enum(y, node, key, names, ARRAY_SIZE(names));
  if (i >= 0) *(enum proxy_protocol *)target = i == 3 ? PROXY_PROTOCOL_OFF : (enum proxy_protocol)i;
}

/* Upgrade tokens (RFC 9110 7.8) that may become tunnels: protocol names, compared without
 * case and without a "/version". */
static void parse_upgrades(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  struct config_backend *b = target;
  if (node->type != YAML_SEQUENCE_NODE) {
    ycfg_error(y, node, key, "expected a list of Upgrade protocol names, like [websocket]");
    return;
  }
  size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
  char **names = xcalloc(n, sizeof *names);
  size_t count = 0;
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *item = ycfg_child(y, node->data.sequence.items.start[i]);
    const char *v = ycfg_scalar(y, item, key, "a protocol name");
    if (!v) continue;
    if (!http_token_valid(v, strlen(v))) {
      ycfg_error(y, item, key, "expected a protocol name (a token, like websocket), got '%s'", v);
      continue;
    }
    if (!strcasecmp(v, "h2c")) {
      ycfg_error(y, item, key, "h2c cannot be tunnelled: it would take the connection past "
                               "stapler's HTTP handling");
      continue;
    }
    names[count] = xstrdup(v);
    ascii_lower(names[count++]);
  }
  for (size_t i = 0; i < b->upgrade_count; i++) free(b->upgrades[i]);
  free(b->upgrades);
  b->upgrades = names;
  b->upgrade_count = count;
}

static void parse_backend(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  struct config_backend *b = target;
  const struct ycfg_field fields[] = {
      {"address", ycfg_backend_address, &b->addr},
      {"mode", parse_backend_mode, &b->mode},
      {"proxy_protocol", parse_proxy_protocol, &b->proxy_protocol},
      {"forwarded_headers", ycfg_bool, &b->forwarded_headers},
      {"connect_timeout", ycfg_duration, &b->connect_timeout_ms},
      {"keepalive_timeout", ycfg_duration, &b->keepalive_ms},
      {"upgrades", parse_upgrades, b},
  };
  ycfg_mapping(y, node, key, fields, ARRAY_SIZE(fields));
  if (node->type == YAML_MAPPING_NODE && !ycfg_has_key(y, node, "address"))
    ycfg_error(y, node, key, "missing key 'address' (host:port or unix:/path)");
}

static void parse_cert_entry(struct ycfg *y, yaml_node_t *node, const char *key,
                             struct config_cert *c) {
  const struct ycfg_field fields[] = {
      {"cert", ycfg_path, &c->cert},
      {"key", ycfg_path, &c->key},
      {"ocsp_response", ycfg_path, &c->ocsp_response},
      {"ocsp_url", ycfg_string, &c->ocsp_url},
  };
  c->line = (int)node->start_mark.line + 1;
  c->column = (int)node->start_mark.column + 1;
  ycfg_mapping(y, node, key, fields, ARRAY_SIZE(fields));
  if (node->type != YAML_MAPPING_NODE) return;
  if (!c->cert) ycfg_error(y, node, key, "missing key 'cert' (PEM file: leaf, then intermediates)");
  if (!c->key) ycfg_error(y, node, key, "missing key 'key' (PEM private key file)");
  if (c->ocsp_url && strncmp(c->ocsp_url, "http://", 7) != 0)
    ycfg_error(y, node, key, "ocsp_url: expected an http:// URL, got '%s'", c->ocsp_url);
}

static void parse_certificates(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  struct config *cfg = target;
  if (node->type != YAML_SEQUENCE_NODE) {
    ycfg_error(y, node, key, "expected a list of {cert: FILE, key: FILE}");
    return;
  }
  size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
  cfg->certs = xcalloc(n, sizeof *cfg->certs);
  cfg->cert_count = n;
  for (size_t i = 0; i < n; i++) {
    char sub[64];
    snprintf(sub, sizeof sub, "%s[%zu]", key, i);
    parse_cert_entry(y, ycfg_child(y, node->data.sequence.items.start[i]), sub, &cfg->certs[i]);
  }
}

static void parse_tls_version(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  static const char *const names[] = {"1.2", "1.3"};
  int i = ycfg_enum(y, node, key, names, ARRAY_SIZE(names));
  if (i >= 0) *(uint16_t *)target = i == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
}

static void parse_alpn(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  struct config_tls *tls = target;
  if (node->type != YAML_SEQUENCE_NODE) {
    ycfg_error(y, node, key, "expected a list of protocol names, like [http/1.1]");
    return;
  }
  size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
  char **names = xcalloc(n, sizeof *names);
  size_t count = 0;
  for (size_t i = 0; i < n; i++) {
    yaml_node_t *item = ycfg_child(y, node->data.sequence.items.start[i]);
    const char *v = ycfg_scalar(y, item, key, "a protocol name");
    if (!v) continue;
    if (strcmp(v, "http/1.1") != 0 && strcmp(v, "h2") != 0) {
      ycfg_error(y, item, key, "expected http/1.1 or h2, got '%s'", v);
      continue;
    }
    names[count++] = xstrdup(v);
  }
  for (size_t i = 0; i < tls->alpn_count; i++) free(tls->alpn[i]);
  free(tls->alpn);
  tls->alpn = names;
  tls->alpn_count = count;
  tls->alpn_given = true;
}

static void parse_tls(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  struct config_tls *tls = target;
  const struct ycfg_field fields[] = {
      {"min_version", parse_tls_version, &tls->min_version},
      {"alpn", parse_alpn, tls},
      {"session_tickets", ycfg_bool, &tls->session_tickets},
      {"ticket_key_file", ycfg_path, &tls->ticket_key_file},
  };
  ycfg_mapping(y, node, key, fields, ARRAY_SIZE(fields));
}

static void parse_policy(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  static const char *const names[] = {"lenient", "strict", "must-staple"};
  int i = ycfg_enum(y, node, key, names, ARRAY_SIZE(names));
  if (i >= 0) *(enum ocsp_policy *)target = (enum ocsp_policy)i;
}

static void parse_ocsp(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  struct config_ocsp *o = target;
  const struct ycfg_field fields[] = {
      {"fetch", ycfg_bool, &o->fetch},
      {"cache_dir", ycfg_path, &o->cache_dir},
      {"policy", parse_policy, &o->policy},
      {"timeout", ycfg_duration, &o->timeout_ms},
  };
  ycfg_mapping(y, node, key, fields, ARRAY_SIZE(fields));
}

static void parse_workers(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  if (node->type == YAML_SCALAR_NODE && !strcmp((const char *)node->data.scalar.value, "auto")) {
    *(unsigned *)target = 0;
    return;
  }
  uint64_t n;
  if (node->type != YAML_SCALAR_NODE) {
    ycfg_error(y, node, key, "expected auto or a number of worker threads");
    return;
  }
  if (ycfg_uint(y, node, key, 1, CONFIG_MAX_WORKERS, &n)) *(unsigned *)target = (unsigned)n;
}

static void parse_timeouts(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  struct config_timeouts *t = target;
  const struct ycfg_field fields[] = {
      {"handshake", ycfg_duration, &t->handshake_ms},
      {"request_header", ycfg_duration, &t->request_header_ms},
      {"idle", ycfg_duration, &t->idle_ms},
      {"shutdown", ycfg_duration, &t->shutdown_ms},
  };
  ycfg_mapping(y, node, key, fields, ARRAY_SIZE(fields));
}

static void parse_max_connections(struct ycfg *y, yaml_node_t *node, const char *key,
                                  void *target) {
  uint64_t n;
  if (ycfg_uint(y, node, key, 1, 1000000, &n)) *(uint32_t *)target = (uint32_t)n;
}

static void parse_max_header_bytes(struct ycfg *y, yaml_node_t *node, const char *key,
                                   void *target) {
  uint64_t n;
  if (ycfg_uint(y, node, key, 1024, 1048576, &n)) *(uint32_t *)target = (uint32_t)n;
}

static void parse_limits(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  struct config_limits *l = target;
  const struct ycfg_field fields[] = {
      {"max_connections", parse_max_connections, &l->max_connections},
      {"max_header_bytes", parse_max_header_bytes, &l->max_header_bytes},
  };
  ycfg_mapping(y, node, key, fields, ARRAY_SIZE(fields));
}

static void parse_admin(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  struct config_admin *a = target;
  if (ycfg_is_null(node)) return; /* "admin:" with nothing: no admin endpoint */
  const struct ycfg_field fields[] = {{"address", ycfg_address, &a->addr}};
  ycfg_mapping(y, node, key, fields, ARRAY_SIZE(fields));
  if (node->type != YAML_MAPPING_NODE) return;
  if (!ycfg_has_key(y, node, "address"))
    ycfg_error(y, node, key, "missing key 'address' (host:port, e.g. 127.0.0.1:9443)");
  else
    a->enabled = a->addr.text != NULL;
}

static void parse_log_level(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  int i = ycfg_enum(y, node, key, names, ARRAY_SIZE(names));
  if (i >= 0) *(enum log_level *)target = (enum log_level)i;
}

static void parse_log_format(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  static const char *const names[] = {"text", "json"};
  int i = ycfg_enum(y, node, key, names, ARRAY_SIZE(names));
  if (i >= 0) *(enum log_format *)target = (enum log_format)i;
}

static void parse_log(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  struct config_log *l = target;
  const struct ycfg_field fields[] = {
      {"level", parse_log_level, &l->level},
      {"format", parse_log_format, &l->format},
      {"access", ycfg_bool, &l->access},
  };
  ycfg_mapping(y, node, key, fields, ARRAY_SIZE(fields));
}

static void parse_top(struct ycfg *y, yaml_node_t *root, struct config *cfg) {
  const struct ycfg_field fields[] = {
      {"listen", parse_listen, cfg},
      {"backend", parse_backend, &cfg->backend},
      {"certificates", parse_certificates, cfg},
      {"default_name", ycfg_string, &cfg->default_name},
      {"tls", parse_tls, &cfg->tls},
      {"ocsp", parse_ocsp, &cfg->ocsp},
      {"workers", parse_workers, &cfg->workers},
      {"timeouts", parse_timeouts, &cfg->timeouts},
      {"limits", parse_limits, &cfg->limits},
      {"admin", parse_admin, &cfg->admin},
      {"log", parse_log, &cfg->log},
  };
  ycfg_mapping(y, root, "", fields, ARRAY_SIZE(fields));
}

/* Checks that involve more than one key. */
static void check_whole(struct ycfg *y, yaml_node_t *root, struct config *cfg) {
  if (!cfg->listen_count)
    ycfg_error(y, root, "listen", "missing: give at least one {address: host:port}");
  if (!cfg->backend.addr.text)
    ycfg_error(y, root, "backend", "missing: give backend.address (host:port or unix:/path)");
  if (!cfg->cert_count)
    ycfg_error(y, root, "certificates", "missing: give at least one {cert: FILE, key: FILE}");
  if (cfg->default_name) ascii_lower(cfg->default_name);
  if (cfg->tls.alpn_count == 0)
    ycfg_error(y, root, "tls.alpn", "expected at least one protocol");
  /* tcp mode passes h2 to the backend only when the file says the backend speaks it. */
  if (cfg->backend.mode == BACKEND_MODE_TCP && !cfg->tls.alpn_given) {
    for (size_t i = 0; i < cfg->tls.alpn_count; i++) free(cfg->tls.alpn[i]);
    cfg->tls.alpn[0] = xstrdup("http/1.1");
    cfg->tls.alpn_count = 1;
  }
}

static struct config *new_config(const char *path) {
  struct config *cfg = xcalloc(1, sizeof *cfg);
  cfg->path = path ? xstrdup(path) : NULL;
  set_defaults(cfg);
  return cfg;
}

struct config *config_load_string(const char *name, const char *dir, const char *yaml, size_t len,
                                  struct strlist *errors) {
  size_t errors_before = errors->count;
  struct ycfg y = {.file = name, .dir = dir, .errors = errors};
  if (!ycfg_check_shape(&y, yaml, len)) return NULL;
  yaml_parser_t parser;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
  if (!yaml_parser_load(&parser, &y.doc)) {
    ycfg_syntax_error(&y, &parser, yaml, len);
    yaml_parser_delete(&parser);
    return NULL;
  }
  yaml_parser_delete(&parser);

  struct config *cfg = new_config(name);
  yaml_node_t *root = yaml_document_get_root_node(&y.doc);
  if (!root || ycfg_is_null(root)) {
    strlist_add(errors, "%s:1:1: the file is empty; see config/stapler.yaml for an example", name);
  } else {
    parse_top(&y, root, cfg);
    if (errors->count == errors_before) check_whole(&y, root, cfg);
  }
  yaml_document_delete(&y.doc);
  if (errors->count != errors_before) {
    config_free(cfg);
    return NULL;
  }
  return cfg;
}

struct config *config_load(const char *path, struct strlist *errors) {
  uint8_t *text;
  size_t len;
  const char *why = read_file(path, &text, &len, MAX_CONFIG_BYTES);
  if (why) {
    strlist_add(errors, "%s: cannot read the config file: %s", path, why);
    return NULL;
  }
  char *copy = xstrdup(path);
  char *dir = dirname(copy);
  char *abs_dir = realpath(dir, NULL);
  struct config *cfg =
      config_load_string(path, abs_dir ? abs_dir : dir, (const char *)text, len, errors);
  free(abs_dir);
  free(copy);
  free(text);
  return cfg;
}

struct config *config_default(void) {
  struct config *cfg = new_config(NULL);
  cfg->listen = xcalloc(1, sizeof *cfg->listen);
  cfg->listen_count = 1;
  if (parse_address("127.0.0.1:8443", false, &cfg->listen[0].addr) ||
      parse_address("127.0.0.1:4000", true, &cfg->backend.addr))
    die_oom(); /* literal addresses cannot fail to parse */
  cfg->default_name = xstrdup("localhost");
  cfg->ocsp.fetch = false;
  free(cfg->ocsp.cache_dir);
  cfg->ocsp.cache_dir = NULL;
  return cfg;
}

void config_free(struct config *cfg) {
  if (!cfg) return;
  for (size_t i = 0; i < cfg->listen_count; i++) config_addr_free(&cfg->listen[i].addr);
  free(cfg->listen);
  config_addr_free(&cfg->backend.addr);
  for (size_t i = 0; i < cfg->backend.upgrade_count; i++) free(cfg->backend.upgrades[i]);
  free(cfg->backend.upgrades);
  for (size_t i = 0; i < cfg->cert_count; i++) {
    free(cfg->certs[i].cert);
    free(cfg->certs[i].key);
    free(cfg->certs[i].ocsp_response);
    free(cfg->certs[i].ocsp_url);
  }
  free(cfg->certs);
  free(cfg->default_name);
  for (size_t i = 0; i < cfg->tls.alpn_count; i++) free(cfg->tls.alpn[i]);
  free(cfg->tls.alpn);
  free(cfg->tls.ticket_key_file);
  free(cfg->ocsp.cache_dir);
  config_addr_free(&cfg->admin.addr);
  free(cfg->path);
  free(cfg);
}

unsigned config_worker_count(const struct config *cfg) {
  if (cfg->workers) return cfg->workers;
  /* The CPUs this process may run on (its affinity mask, as set by taskset or a container's
   * cpuset), not all those online: more workers than that only take turns. */
  unsigned n = uv_available_parallelism();
  return n > 0 ? MIN(n, CONFIG_MAX_WORKERS) : 1;
}

const char *config_policy_name(enum ocsp_policy policy) {
  switch (policy) {
  case OCSP_POLICY_STRICT: return "strict";
  case OCSP_POLICY_MUST_STAPLE: return "must-staple";
  default: return "lenient";
  }
}
