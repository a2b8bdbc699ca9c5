#include "stapler/certstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/util.h"

struct name_entry {
  char *name;
  struct cert_pair pair;
};

static void lookup_name(const struct certstore *s, const char *name,
                        struct cert_candidates *out);

static int compare_entries(const void *a, const void *b) {
  return strcmp(((const struct name_entry *)a)->name, ((const struct name_entry *)b)->name);
}

static struct name_entry *find_name(const struct certstore *s, const char *name) {
  struct name_entry key = {.name = (char *)name};
  return bsearch(&key, s->names, s->name_count, sizeof *s->names, compare_entries);
}

static struct name_entry *find_or_add(struct certstore *s, const char *name, size_t *cap) {
  for (size_t i = 0; i < s->name_count; i++)
    if (!strcmp(s->names[i].name, name)) return &s->names[i];
  if (s->name_count == *cap) {
    *cap = *cap ? *cap * 2 : 16;
    s->names = xrealloc(s->names, *cap * sizeof *s->names);
  }
  struct name_entry *e = &s->names[s->name_count++];
  e->name = xstrdup(name);
  e->pair = (struct cert_pair){NULL, NULL};
  return e;
}

static bool index_cert(struct certstore *s, struct cert *c, size_t *cap, struct strlist *errors) {
  bool ok = true;
  for (size_t i = 0; i < c->info.name_count; i++) {
    struct name_entry *e = find_or_add(s, c->info.names[i], cap);
    struct cert **slot = c->info.kind == KEY_KIND_RSA ? &e->pair.rsa : &e->pair.ecdsa;
    if (*slot && *slot != c) {
      strlist_add(errors, "%s and %s both hold an %s certificate for %s; keep one", (*slot)->label,
                  c->label, c->info.kind == KEY_KIND_RSA ? "RSA" : "ECDSA", e->name);
      ok = false;
      continue;
    }
    *slot = c;
  }
  return ok;
}

struct certstore *certstore_build(struct cert **certs, size_t count, const char *default_name,
                                  struct strlist *errors) {
  struct certstore *s = xcalloc(1, sizeof *s);
  s->certs = certs;
  s->cert_count = count;
  size_t cap = 0;
  bool ok = count > 0;
  for (size_t i = 0; i < count; i++) ok = index_cert(s, certs[i], &cap, errors) && ok;
  qsort(s->names, s->name_count, sizeof *s->names, compare_entries);
  if (ok) {
    s->default_name = xstrdup(default_name ? default_name : certs[0]->info.names[0]);
    struct cert_candidates found;
    lookup_name(s, s->default_name, &found);
    const struct cert_pair *p = found.count ? found.pairs[0] : NULL;
    if (!p) {
      strlist_add(errors, "default_name %s: no certificate holds this name", s->default_name);
      ok = false;
    }
    s->default_pair = p;
  }
  if (!ok) {
    certstore_free(s);
    return NULL;
  }
  return s;
}

struct certstore *certstore_load(const struct config *cfg, time_t now, struct strlist *errors,
                                 struct strlist *warnings) {
  struct cert **certs = xcalloc(cfg->cert_count, sizeof *certs);
  bool ok = true;
  for (size_t i = 0; i < cfg->cert_count; i++) {
    certs[i] = cert_load(&cfg->certs[i], &cfg->ocsp, now, errors, warnings);
    if (!certs[i]) ok = false;
  }
  if (!ok) {
    for (size_t i = 0; i < cfg->cert_count; i++) cert_free(certs[i]);
    free(certs);
    return NULL;
  }
  return certstore_build(certs, cfg->cert_count, cfg->default_name, errors);
}

void certstore_free(struct certstore *s) {
  if (!s) return;
  for (size_t i = 0; i < s->name_count; i++) free(s->names[i].name);
  free(s->names);
  for (size_t i = 0; i < s->cert_count; i++) cert_free(s->certs[i]);
  free(s->certs);
  free(s->default_name);
  free(s);
}

/* Lowercases `sni` into `out` and drops one trailing dot. False if it cannot be a host name. */
static bool normalise_name(const char *sni, char *out, size_t cap) {
  size_t n = strlen(sni);
  if (n > 0 && sni[n - 1] == '.') n--;
  if (n == 0 || n >= cap) return false;
  memcpy(out, sni, n);
  out[n] = '\0';
  ascii_lower(out);
  return true;
}

/* The exact entry, then the wildcard one, for a normalised name. */
static void lookup_name(const struct certstore *s, const char *name,
                        struct cert_candidates *out) {
  out->count = 0;
  const struct name_entry *e = find_name(s, name);
  if (e) out->pairs[out->count++] = &e->pair;
  const char *dot = strchr(name, '.');
  if (!dot || dot == name) return;
  char wildcard[260];
  snprintf(wildcard, sizeof wildcard, "*%s", dot);
  const struct name_entry *w = find_name(s, wildcard);
  if (w && w != e) out->pairs[out->count++] = &w->pair; /* "*.x" itself asked for: once */
}

void certstore_lookup(const struct certstore *s, const char *sni, struct cert_candidates *out) {
  char name[256];
  out->count = 0;
  if (sni && normalise_name(sni, name, sizeof name)) lookup_name(s, name, out);
  if (out->count == 0) {
    out->pairs[0] = s->default_pair;
    out->count = 1;
  }
}
