/* A growable list of heap strings; the list owns them. */
#ifndef STAPLER_STRLIST_H
#define STAPLER_STRLIST_H

#include <stddef.h>

struct strlist {
  char **items;
  size_t count, cap;
};

void strlist_add(struct strlist *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strlist_free(struct strlist *l);

#endif
