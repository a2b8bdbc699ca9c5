#include "stapler/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "stapler/util.h"

static void reserve(struct strbuf *b, size_t more) {
  if (b->len + more + 1 <= b->cap) return;
  b->cap = MAX(b->cap * 2, b->len + more + 1);
  b->data = xrealloc(b->data, b->cap);
}

void strbuf_printf(struct strbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  reserve(b, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void strbuf_json_string(struct strbuf *b, const char *s) {
  strbuf_printf(b, "\"");
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      strbuf_printf(b, "\\%c", c);
    else if (c < 0x20 || c == 0x7f)
      strbuf_printf(b, "\\u%04x", c);
    else
      strbuf_printf(b, "%c", c);
  }
  strbuf_printf(b, "\"");
}

void strbuf_free(struct strbuf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
