/* Reading a YAML document into typed values, with FILE:LINE:COLUMN on every error.
 * Parsers record an error and leave their target unchanged when a value is wrong, so a whole
 * file is checked in one pass and every problem is reported. */
#ifndef STAPLER_YAMLCFG_H
#define STAPLER_YAMLCFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "stapler/config.h"
#include "stapler/strlist.h"

struct ycfg {
  const char *file; /* name used in messages */
  const char *dir;  /* base for relative paths */
  yaml_document_t doc;
  struct strlist *errors;
};

/* Parses one value. `key` is the dotted path ("backend.mode") used in messages. */
typedef void (*ycfg_parser)(struct ycfg *y, yaml_node_t *node, const char *key, void *target);

struct ycfg_field {
  const char *name;
  ycfg_parser parse;
  void *target;
};

void ycfg_error(struct ycfg *y, const yaml_node_t *node, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Limits on the shape of a document, far beyond what a configuration needs. */
#define YCFG_MAX_DEPTH 64            /* mappings and lists inside each other */
#define YCFG_MAX_ANCHORS 256
#define YCFG_MAX_ALIASES 256
#define YCFG_MAX_ALIASED_VALUES 10000 /* values that all aliases together stand for */

/* Reads the `len` bytes of `yaml` as a stream of events before they are loaded, and refuses
 * what would make libyaml or the loader work far beyond the size of the file: nesting deeper
 * than YCFG_MAX_DEPTH (libyaml slows down with the square of the depth), and aliases beyond the
 * limits (each alias is a whole copy of its anchor's value to whoever walks the document, so a
 * few can stand for billions of values). Syntax errors are recorded too. False when anything
 * was. */
bool ycfg_check_shape(struct ycfg *y, const char *yaml, size_t len);

/* Records the error `parser` stopped at in `yaml` (its input), with its FILE:LINE:COLUMN. */
void ycfg_syntax_error(struct ycfg *y, const yaml_parser_t *parser, const char *yaml,
                       size_t len);

yaml_node_t *ycfg_child(struct ycfg *y, yaml_node_item_t id);
/* Whether a mapping node has `key` (whatever its value). */
bool ycfg_has_key(struct ycfg *y, yaml_node_t *mapping, const char *key);
bool ycfg_is_null(const yaml_node_t *node);

/* Walks a mapping, dispatching known keys to their parsers; unknown and repeated keys are errors.
 * `section` is the dotted prefix ("" at the top). */
void ycfg_mapping(struct ycfg *y, yaml_node_t *node, const char *section,
                  const struct ycfg_field *fields, size_t count);

/* Scalar parsers; each `target` points at the type named. */
void ycfg_string(struct ycfg *y, yaml_node_t *node, const char *key, void *target);   /* char * */
void ycfg_path(struct ycfg *y, yaml_node_t *node, const char *key, void *target);     /* char * */
void ycfg_bool(struct ycfg *y, yaml_node_t *node, const char *key, void *target);     /* bool */
void ycfg_duration(struct ycfg *y, yaml_node_t *node, const char *key, void *target); /* ms */
void ycfg_address(struct ycfg *y, yaml_node_t *node, const char *key, void *target);  /* addr */
/* Like ycfg_address, but unix:/path is also allowed. */
void ycfg_backend_address(struct ycfg *y, yaml_node_t *node, const char *key, void *target);

/* Helpers for parsers built on the above. */
const char *ycfg_scalar(struct ycfg *y, yaml_node_t *node, const char *key, const char *expected);
bool ycfg_uint(struct ycfg *y, yaml_node_t *node, const char *key, uint64_t min, uint64_t max,
               uint64_t *out);
/* Matches the scalar against `names`; returns its index or -1 (error recorded). */
int ycfg_enum(struct ycfg *y, yaml_node_t *node, const char *key, const char *const *names,
              size_t count);

/* When false, host names in addresses are refused instead of looked up (the config fuzzer
 * must not send DNS queries). True by default. */
extern bool yamlcfg_resolve_names;

/* Parsing of the value forms, shared with code that builds configs without YAML. */
bool parse_duration_ms(const char *s, uint64_t *out_ms);
/* host:port, [v6]:port or unix:/path; resolves host names. Returns NULL or an error text. */
const char *parse_address(const char *s, bool allow_unix, struct config_addr *out);
void config_addr_free(struct config_addr *a);

#endif
