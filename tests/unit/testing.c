#include "testing.h"

#include "stapler/util.h"

unsigned char *testing_read(const char *relpath, size_t *len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", TEST_DATA_DIR, relpath);
  uint8_t *data;
  if (!read_file(path, &data, len, 64 << 20)) {
    fprintf(stderr, "cannot read test data %s\n", path);
    exit(2);
  }
  return data;
}
