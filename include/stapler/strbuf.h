/* A growable string for building responses (metrics, JSON). The buffer owns its memory. */
#ifndef STAPLER_STRBUF_H
#define STAPLER_STRBUF_H

#include <stddef.h>

struct strbuf {
  char *data;
  size_t len, cap;
};

void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends `s` as a JSON string, quotes included. */
void strbuf_json_string(struct strbuf *b, const char *s);
void strbuf_free(struct strbuf *b);

#endif
