/* A minimal unit-test harness: each test file defines TESTS() with RUN(name) lines. */
#ifndef STAPLER_TESTING_H
#define STAPLER_TESTING_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int testing_failures;
extern const char *testing_current;

#define CHECK(cond)                                                                         \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__, testing_current, \
              #cond);                                                                       \
      testing_failures++;                                                                   \
    }                                                                                       \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                                    \
  do {                                                                                        \
    long long va_ = (long long)(a), vb_ = (long long)(b);                                     \
    if (va_ != vb_) {                                                                         \
      fprintf(stderr, "%s:%d: %s: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__,       \
              testing_current, #a, #b, va_, vb_);                                             \
      testing_failures++;                                                                     \
    }                                                                                         \
  } while (0)

#define CHECK_STR(a, b)                                                                       \
  do {                                                                                        \
    const char *sa_ = (a), *sb_ = (b);                                                        \
    if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                                              \
      fprintf(stderr, "%s:%d: %s: %s == %s failed: '%s' != '%s'\n", __FILE__, __LINE__,       \
              testing_current, #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");           \
      testing_failures++;                                                                     \
    }                                                                                         \
  } while (0)

#define CHECK_CONTAINS(hay, needle)                                                           \
  do {                                                                                        \
    const char *h_ = (hay), *n_ = (needle);                                                   \
    if (!h_ || !strstr(h_, n_)) {                                                             \
      fprintf(stderr, "%s:%d: %s: expected '%s' to contain '%s'\n", __FILE__, __LINE__,       \
              testing_current, h_ ? h_ : "(null)", n_);                                       \
      testing_failures++;                                                                     \
    }                                                                                         \
  } while (0)

#define RUN(fn)                           \
  do {                                    \
    testing_current = #fn;                \
    int before_ = testing_failures;       \
    fn();                                 \
    fprintf(stderr, "%s %s\n", testing_failures == before_ ? "ok  " : "FAIL", #fn); \
  } while (0)

#define TEST_MAIN(body)                                     \
  int testing_failures = 0;                                 \
  const char *testing_current = "";                         \
  int main(int argc, char **argv) {                         \
    (void)argc;                                             \
    (void)argv;                                             \
    body;                                                   \
    if (testing_failures) fprintf(stderr, "%d failure(s)\n", testing_failures); \
    return testing_failures ? 1 : 0;                        \
  }

/* Reads a file under the test data directory (TEST_DATA_DIR), aborting the test run on error. */
unsigned char *testing_read(const char *relpath, size_t *len);

#endif
