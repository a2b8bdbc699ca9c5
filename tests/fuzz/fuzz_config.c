/* The YAML configuration loader. Host names are not looked up: resolution is not what is
 * being fuzzed, and a fuzzer must not send packets. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/config.h"
#include "stapler/yamlcfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  yamlcfg_resolve_names = false;
  if (size > 65536) return 0;
  for (size_t i = 0; i < size; i++)
    if (data[i] == '\0') return 0;
  struct strlist errors = {0};
  struct config *cfg = config_load_string("fuzz.yaml", "/nonexistent", (const char *)data, size,
                                          &errors);
  config_free(cfg);
  strlist_free(&errors);
  return 0;
}
