#include "testing.h"

#include "stapler/util.h"

unsigned char *testing_read(const char *relpath, size_t *len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", TEST_DATA_DIR, relpath);
  uint8_t *data;
  const char *why = read_file(path, &data, len, 64 << 20);
  if (why) {
    fprintf(stderr, "cannot read test data %s: %s\n", path, why);
    exit(2);
  }
  return data;
}
