#include "stapler/asn1time.h"
#include "testing.h"

static bool gt(const char *s, time_t *t) {
  return asn1_parse_generalized_time((const uint8_t *)s, strlen(s), t);
}
static bool ut(const char *s, time_t *t) {
  return asn1_parse_utc_time((const uint8_t *)s, strlen(s), t);
}

static void test_generalized(void) {
  time_t t;
  CHECK(gt("20121023070000Z", &t));
  CHECK_EQ_INT(t, 1350975600);
  CHECK(gt("20240229235959Z", &t)); /* leap day */
  CHECK(gt("20121023070000.5Z", &t));
  CHECK_EQ_INT(t, 1350975600);
  CHECK(!gt("20230229000000Z", &t)); /* not a leap year */
  CHECK(!gt("20121023070000", &t));  /* no Z */
  CHECK(!gt("20121023070000+0100", &t));
  CHECK(!gt("20121023070000.Z", &t));
  CHECK(!gt("20121023070000.50Z", &t)); /* DER: no trailing zero */
  CHECK(!gt("2012102307000Z", &t));
  CHECK(!gt("20121323070000Z", &t));
  CHECK(!gt("20121023250000Z", &t));
  CHECK(!gt("", &t));
}

static void test_utc(void) {
  time_t t;
  CHECK(ut("121023070000Z", &t));
  CHECK_EQ_INT(t, 1350975600);
  CHECK(ut("500101000000Z", &t)); /* 1950 */
  CHECK_EQ_INT(t, -631152000);
  CHECK(!ut("1210230700Z", &t));
  CHECK(!ut("121023070000", &t));
}

static void test_format(void) {
  char out[32];
  format_utc(1350975600, out, sizeof out);
  CHECK_STR(out, "2012-10-23T07:00:00Z");
}

TEST_MAIN({
  RUN(test_generalized);
  RUN(test_utc);
  RUN(test_format);
})
