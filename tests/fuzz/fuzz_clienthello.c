/* ClientHello capability parsing, as records off the wire and as a bare message body. */
#include <stddef.h>
#include <stdint.h>

#include "stapler/certselect.h"
#include "stapler/clienthello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct client_caps caps;
  if (clienthello_parse_records(data, size, &caps))
    (void)certselect_version(&caps, 0x0303, 0x0304);
  (void)clienthello_parse(data, size, &caps);
  return 0;
}
