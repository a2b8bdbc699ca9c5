/* `stapler -t -c FILE`: validate a configuration and report on every certificate. */
#ifndef STAPLER_CHECK_H
#define STAPLER_CHECK_H

#include <stdio.h>

/* Prints findings to `out` and problems to `err`. Returns the exit code: 0 when usable. */
int check_config(const char *path, FILE *out, FILE *err);

#endif
