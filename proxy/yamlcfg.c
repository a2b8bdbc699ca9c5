/* Typed access to a libyaml document for the config loader. */
#include "stapler/yamlcfg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "stapler/util.h"

bool yamlcfg_resolve_names = true;

void ycfg_error(struct ycfg *y, const yaml_node_t *node, const char *key, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  unsigned long line = node ? node->start_mark.line + 1 : 1;
  unsigned long col = node ? node->start_mark.column + 1 : 1;
  if (key && *key)
    strlist_add(y->errors, "%s:%lu:%lu: %s: %s", y->file, line, col, key, msg);
  else
    strlist_add(y->errors, "%s:%lu:%lu: %s", y->file, line, col, msg);
}

/* ---- reading the stream ----------------------------------------------------------------------*/

/* Where byte `offset` of `yaml` is, counting columns in characters as libyaml does. */
static void offset_position(const char *yaml, size_t len, size_t offset, unsigned long *line,
                            unsigned long *column) {
  *line = *column = 1;
  for (size_t i = 0; i < offset && i < len; i++) {
    if (yaml[i] == '\n') {
      ++*line;
      *column = 1;
    } else if (((unsigned char)yaml[i] & 0xc0) != 0x80) { /* not inside a UTF-8 sequence */
      ++*column;
    }
  }
}

void ycfg_syntax_error(struct ycfg *y, const yaml_parser_t *parser, const char *yaml,
                       size_t len) {
  const char *problem = parser->problem ? parser->problem : "unreadable";
  if (parser->error == YAML_READER_ERROR) { /* its position is a byte offset only */
    unsigned long line, column;
    offset_position(yaml, len, parser->problem_offset, &line, &column);
    char value[24] = "";
    if (parser->problem_value >= 0)
      snprintf(value, sizeof value, " (0x%02x)", (unsigned)parser->problem_value);
    strlist_add(y->errors, "%s:%lu:%lu: %s%s%s", y->file, line, column,
                strstr(problem, "UTF-8") ? "not UTF-8: " : "", problem, value);
    return;
  }
  strlist_add(y->errors, "%s:%lu:%lu: YAML syntax: %s%s%s", y->file,
              (unsigned long)parser->problem_mark.line + 1,
              (unsigned long)parser->problem_mark.column + 1, problem,
              parser->context ? " " : "", parser->context ? parser->context : "");
}

struct shape_anchor {
  char *name;
  size_t values; /* what an alias to it stands for; 0 while its own value is being read */
};

struct shape {
  struct shape_anchor anchors[YCFG_MAX_ANCHORS];
  size_t anchor_count, alias_count;
  size_t values;         /* values read, an alias counting for all those it stands for */
  size_t aliased_values; /* the part of `values` that aliases stand for */
  struct {
    size_t values_before; /* `values` before the collection began */
    struct shape_anchor *anchor;
  } open[YCFG_MAX_DEPTH]; /* the mappings and lists being read, outermost first */
  size_t depth;
};

static bool shape_error(struct ycfg *y, const yaml_mark_t *mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool shape_error(struct ycfg *y, const yaml_mark_t *mark, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  strlist_add(y->errors, "%s:%lu:%lu: %s", y->file, (unsigned long)mark->line + 1,
              (unsigned long)mark->column + 1, msg);
  return false;
}

static bool shape_anchor(struct ycfg *y, struct shape *sh, const yaml_event_t *ev,
                         const yaml_char_t *name, size_t values, struct shape_anchor **out) {
  if (out) *out = NULL;
  if (!name) return true;
  if (sh->anchor_count == YCFG_MAX_ANCHORS)
    return shape_error(y, &ev->start_mark, "more than %d anchors", YCFG_MAX_ANCHORS);
  struct shape_anchor *a = &sh->anchors[sh->anchor_count++];
  a->name = xstrdup((const char *)name);
  a->values = values;
  if (out) *out = a;
  return true;
}

static bool shape_alias(struct ycfg *y, struct shape *sh, const yaml_event_t *ev) {
  const char *name = (const char *)ev->data.alias.anchor;
  if (++sh->alias_count > YCFG_MAX_ALIASES)
    return shape_error(y, &ev->start_mark, "more than %d aliases", YCFG_MAX_ALIASES);
  const struct shape_anchor *a = NULL;
  for (size_t i = sh->anchor_count; i-- > 0 && !a;) /* the latest anchor of that name counts */
    if (!strcmp(sh->anchors[i].name, name)) a = &sh->anchors[i];
  if (!a) return true; /* the loader reports it */
  if (a->values == 0)
    return shape_error(y, &ev->start_mark, "alias *%s inside the value it names", name);
  sh->values += a->values;
  sh->aliased_values += a->values;
  if (sh->aliased_values > YCFG_MAX_ALIASED_VALUES)
    return shape_error(y, &ev->start_mark, "aliases stand for more than %d values",
                       YCFG_MAX_ALIASED_VALUES);
  return true;
}

static bool shape_event(struct ycfg *y, struct shape *sh, const yaml_event_t *ev) {
  switch (ev->type) {
  case YAML_SCALAR_EVENT:
    sh->values++;
    return shape_anchor(y, sh, ev, ev->data.scalar.anchor, 1, NULL);
  case YAML_SEQUENCE_START_EVENT:
  case YAML_MAPPING_START_EVENT: {
    if (sh->depth == YCFG_MAX_DEPTH)
      return shape_error(y, &ev->start_mark, "nesting deeper than %d levels", YCFG_MAX_DEPTH);
    const yaml_char_t *anchor = ev->type == YAML_SEQUENCE_START_EVENT
                                    ? ev->data.sequence_start.anchor
                                    : ev->data.mapping_start.anchor;
    sh->open[sh->depth].values_before = sh->values++;
    return shape_anchor(y, sh, ev, anchor, 0, &sh->open[sh->depth++].anchor);
  }
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT:
    if (sh->depth == 0) return true; /* cannot happen: libyaml pairs them */
    sh->depth--;
    if (sh->open[sh->depth].anchor)
      sh->open[sh->depth].anchor->values = sh->values - sh->open[sh->depth].values_before;
    return true;
  case YAML_ALIAS_EVENT: return shape_alias(y, sh, ev);
  default: return true;
  }
}

bool ycfg_check_shape(struct ycfg *y, const char *yaml, size_t len) {
  struct shape *sh = xcalloc(1, sizeof *sh);
  yaml_parser_t parser;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
  bool ok = true, done = false;
  while (ok && !done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      ycfg_syntax_error(y, &parser, yaml, len);
      ok = false;
      break;
    }
    ok = shape_event(y, sh, &ev);
    done = ev.type == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  for (size_t i = 0; i < sh->anchor_count; i++) free(sh->anchors[i].name);
  free(sh);
  return ok;
}

/* ---- the document ----------------------------------------------------------------------------*/

yaml_node_t *ycfg_child(struct ycfg *y, yaml_node_item_t id) {
  return yaml_document_get_node(&y->doc, id);
}

bool ycfg_has_key(struct ycfg *y, yaml_node_t *mapping, const char *key) {
  if (mapping->type != YAML_MAPPING_NODE) return false;
  for (yaml_node_pair_t *p = mapping->data.mapping.pairs.start;
       p < mapping->data.mapping.pairs.top; p++) {
    yaml_node_t *k = ycfg_child(y, p->key);
    if (k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
      return true;
  }
  return false;
}

bool ycfg_is_null(const yaml_node_t *node) {
  if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return false;
  const char *v = (const char *)node->data.scalar.value;
  return !strcmp(v, "") || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
         !strcmp(v, "NULL");
}

static const char *node_kind(const yaml_node_t *node) {
  switch (node->type) {
  case YAML_MAPPING_NODE: return "a mapping";
  case YAML_SEQUENCE_NODE: return "a list";
  default: return "a scalar";
  }
}

static void join_key(char *out, size_t cap, const char *section, const char *name) {
  if (section && *section)
    snprintf(out, cap, "%s.%s", section, name);
  else
    snprintf(out, cap, "%s", name);
}

static void report_unknown_key(struct ycfg *y, yaml_node_t *knode, const char *key,
                               const struct ycfg_field *fields, size_t count) {
  char allowed[512] = "";
  size_t n = 0;
  for (size_t i = 0; i < count && n < sizeof allowed; i++)
    n += (size_t)snprintf(allowed + n, sizeof allowed - n, "%s%s", i ? ", " : "", fields[i].name);
  ycfg_error(y, knode, key, "unknown key (expected one of: %s)", allowed);
}

void ycfg_mapping(struct ycfg *y, yaml_node_t *node, const char *section,
                  const struct ycfg_field *fields, size_t count) {
  if (node->type != YAML_MAPPING_NODE) {
    ycfg_error(y, node, section, "expected a mapping, got %s", node_kind(node));
    return;
  }
  bool seen[64] = {false};
  for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
       p++) {
    yaml_node_t *knode = ycfg_child(y, p->key);
    yaml_node_t *vnode = ycfg_child(y, p->value);
    if (knode->type != YAML_SCALAR_NODE) {
      ycfg_error(y, knode, section, "keys must be plain words, got %s", node_kind(knode));
      continue;
    }
    const char *name = (const char *)knode->data.scalar.value;
    char key[256];
    join_key(key, sizeof key, section, name);
    size_t i = 0;
    while (i < count && strcmp(fields[i].name, name) != 0) i++;
    if (i == count) {
      report_unknown_key(y, knode, key, fields, count);
      continue;
    }
    if (seen[i]) {
      ycfg_error(y, knode, key, "key given twice");
      continue;
    }
    seen[i] = true;
    fields[i].parse(y, vnode, key, fields[i].target);
  }
}

const char *ycfg_scalar(struct ycfg *y, yaml_node_t *node, const char *key, const char *expected) {
  if (node->type != YAML_SCALAR_NODE) {
    ycfg_error(y, node, key, "expected %s, got %s", expected, node_kind(node));
    return NULL;
  }
  return (const char *)node->data.scalar.value;
}

void ycfg_string(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  char **out = target;
  if (ycfg_is_null(node)) {
    free(*out);
    *out = NULL;
    return;
  }
  const char *v = ycfg_scalar(y, node, key, "a string");
  if (!v) return;
  if (!*v) {
    ycfg_error(y, node, key, "expected a non-empty string");
    return;
  }
  free(*out);
  *out = xstrdup(v);
}

void ycfg_path(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  char **out = target;
  char *raw = NULL;
  ycfg_string(y, node, key, &raw);
  if (!raw) {
    if (ycfg_is_null(node)) {
      free(*out);
      *out = NULL;
    }
    return;
  }
  free(*out);
  if (raw[0] == '/' || !y->dir) {
    *out = raw;
    return;
  }
  size_t n = strlen(y->dir) + strlen(raw) + 2;
  *out = xmalloc(n);
  snprintf(*out, n, "%s/%s", y->dir, raw);
  free(raw);
}

void ycfg_bool(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  static const char *const truthy[] = {"true", "True", "TRUE", "yes", "Yes", "on", "On"};
  static const char *const falsy[] = {"false", "False", "FALSE", "no", "No", "off", "Off"};
  const char *v = ycfg_scalar(y, node, key, "true or false");
  if (!v) return;
  for (size_t i = 0; i < ARRAY_SIZE(truthy); i++) {
    if (!strcmp(v, truthy[i])) {
      *(bool *)target = true;
      return;
    }
    if (!strcmp(v, falsy[i])) {
      *(bool *)target = false;
      return;
    }
  }
  ycfg_error(y, node, key, "expected true or false, got '%s'", v);
}

bool parse_duration_ms(const char *s, uint64_t *out_ms) {
  if (!isdigit((unsigned char)*s)) return false;
  errno = 0;
  char *end;
  unsigned long long n = strtoull(s, &end, 10);
  if (errno) return false;
  uint64_t unit;
  if (!strcmp(end, "ms"))
    unit = 1;
  else if (!strcmp(end, "s"))
    unit = 1000;
  else if (!strcmp(end, "m"))
    unit = 60 * 1000;
  else if (!strcmp(end, "h"))
    unit = 3600 * 1000;
  else
    return false;
  if (n > UINT64_MAX / unit / 1000) return false; /* keep far away from overflow */
  *out_ms = n * unit;
  return true;
}

void ycfg_duration(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  const char *v = ycfg_scalar(y, node, key, "a duration like 500ms, 10s, 5m or 12h");
  if (!v) return;
  uint64_t ms;
  if (!parse_duration_ms(v, &ms)) {
    ycfg_error(y, node, key, "expected a duration like 500ms, 10s, 5m or 12h, got '%s'", v);
    return;
  }
  if (ms == 0) {
    ycfg_error(y, node, key, "expected a duration greater than zero, got '%s'", v);
    return;
  }
  *(uint64_t *)target = ms;
}

bool ycfg_uint(struct ycfg *y, yaml_node_t *node, const char *key, uint64_t min, uint64_t max,
               uint64_t *out) {
  const char *v = ycfg_scalar(y, node, key, "a whole number");
  if (!v) return false;
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (!isdigit((unsigned char)*v) || *end || errno || n < min || n > max) {
    ycfg_error(y, node, key, "expected a whole number from %llu to %llu, got '%s'",
               (unsigned long long)min, (unsigned long long)max, v);
    return false;
  }
  *out = n;
  return true;
}

int ycfg_enum(struct ycfg *y, yaml_node_t *node, const char *key, const char *const *names,
              size_t count) {
  char expected[256] = "";
  size_t n = 0;
  for (size_t i = 0; i < count && n < sizeof expected; i++)
    n += (size_t)snprintf(expected + n, sizeof expected - n, "%s%s", i ? " | " : "one of ",
                          names[i]);
  const char *v = ycfg_scalar(y, node, key, expected);
  if (!v) return -1;
  for (size_t i = 0; i < count; i++)
    if (!strcmp(v, names[i])) return (int)i;
  ycfg_error(y, node, key, "expected %s, got '%s'", expected, v);
  return -1;
}

void config_addr_free(struct config_addr *a) {
  free(a->text);
  free(a->host);
  free(a->unix_path);
  memset(a, 0, sizeof *a);
}

static const char *parse_unix_address(const char *path, struct config_addr *out) {
  struct sockaddr_un un;
  if (path[0] != '/') return "expected an absolute path after unix:";
  if (strlen(path) >= sizeof un.sun_path) return "unix socket path is too long";
  out->unix_path = xstrdup(path);
  memset(&un, 0, sizeof un);
  un.sun_family = AF_UNIX;
  memcpy(un.sun_path, path, strlen(path));
  memcpy(&out->ss, &un, sizeof un);
  out->ss_len = sizeof un;
  return NULL;
}

/* Splits "host:port" or "[v6]:port". */
static const char *split_host_port(const char *s, char *host, size_t host_cap, uint16_t *port) {
  const char *colon;
  const char *hstart = s;
  size_t hlen;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':') return "expected [IPv6]:port";
    hstart = s + 1;
    hlen = (size_t)(close - hstart);
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon) return "expected host:port";
    if (memchr(s, ':', (size_t)(colon - s))) return "IPv6 addresses are written [addr]:port";
    hlen = (size_t)(colon - s);
  }
  if (hlen == 0 || hlen >= host_cap) return "expected a host before the port";
  memcpy(host, hstart, hlen);
  host[hlen] = '\0';
  char *end;
  errno = 0;
  unsigned long p = strtoul(colon + 1, &end, 10);
  if (!isdigit((unsigned char)colon[1]) || *end || errno || p == 0 || p > 65535)
    return "expected a port from 1 to 65535";
  *port = (uint16_t)p;
  return NULL;
}

const char *parse_address(const char *s, bool allow_unix, struct config_addr *out) {
  memset(out, 0, sizeof *out);
  if (!strncmp(s, "unix:", 5)) {
    if (!allow_unix) return "unix sockets are not allowed here";
    const char *err = parse_unix_address(s + 5, out);
    if (err) return err;
    out->text = xstrdup(s);
    return NULL;
  }
  char host[256];
  uint16_t port;
  const char *err = split_host_port(s, host, sizeof host, &port);
  if (err) return err;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = yamlcfg_resolve_names ? 0 : AI_NUMERICHOST};
  struct addrinfo *res = NULL;
  char service[8];
  snprintf(service, sizeof service, "%u", port);
  int rc = getaddrinfo(host, service, &hints, &res);
  if (rc != 0 || !res) return "cannot resolve the host name";
  memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
  out->ss_len = res->ai_addrlen;
  freeaddrinfo(res);
  out->text = xstrdup(s);
  out->host = xstrdup(host);
  out->port = port;
  return NULL;
}

static void parse_address_node(struct ycfg *y, yaml_node_t *node, const char *key, void *target,
                               bool allow_unix) {
  const char *v = ycfg_scalar(y, node, key, "an address");
  if (!v) return;
  struct config_addr addr;
  const char *err = parse_address(v, allow_unix, &addr);
  if (err) {
    ycfg_error(y, node, key, "%s%s, got '%s'", err,
               allow_unix ? " (host:port, [v6]:port or unix:/path)" : " (host:port or [v6]:port)",
               v);
    return;
  }
  config_addr_free(target);
  *(struct config_addr *)target = addr;
}

void ycfg_address(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  parse_address_node(y, node, key, target, false);
}

void ycfg_backend_address(struct ycfg *y, yaml_node_t *node, const char *key, void *target) {
  parse_address_node(y, node, key, target, true);
}
