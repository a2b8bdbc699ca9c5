#include "stapler/asn1time.h"

#include <stdio.h>
#include <string.h>

static bool digits(const uint8_t *s, size_t n, int *out) {
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

static bool days_ok(int year, int month, int day) {
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1) return false;
  int max = mdays[month - 1];
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month == 2 && leap) max = 29;
  return day <= max;
}

/* Parses MMDDHHMMSS after the year and checks the trailing Z. */
static bool finish(const uint8_t *s, size_t len, int year, time_t *out) {
  int mon, day, hour, min, sec;
  if (len < 10 || !digits(s, 2, &mon) || !digits(s + 2, 2, &day) || !digits(s + 4, 2, &hour) ||
      !digits(s + 6, 2, &min) || !digits(s + 8, 2, &sec))
    return false;
  if (!days_ok(year, mon, day) || hour > 23 || min > 59 || sec > 60) return false;
  s += 10;
  len -= 10;
  if (len > 0 && s[0] == '.') { /* fractional seconds: at least one digit, no trailing zero */
    size_t i = 1;
    while (i < len && s[i] >= '0' && s[i] <= '9') i++;
    if (i == 1 || s[i - 1] == '0') return false;
    s += i;
    len -= i;
  }
  if (len != 1 || s[0] != 'Z') return false;
  struct tm tm = {.tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day,
                  .tm_hour = hour, .tm_min = min, .tm_sec = sec};
  *out = timegm(&tm);
  return true;
}

bool asn1_parse_generalized_time(const uint8_t *s, size_t len, time_t *out) {
  int year;
  if (len < 4 || !digits(s, 4, &year)) return false;
  return finish(s + 4, len - 4, year, out);
}

bool asn1_parse_utc_time(const uint8_t *s, size_t len, time_t *out) {
  int yy;
  if (len < 2 || !digits(s, 2, &yy)) return false;
  if (len >= 3 && s[len - 1] == 'Z' && memchr(s, '.', len)) return false; /* no fractions */
  return finish(s + 2, len - 2, yy >= 50 ? 1900 + yy : 2000 + yy, out);
}

void format_utc(time_t t, char *out, size_t cap) {
  struct tm tm;
  if (!gmtime_r(&t, &tm)) {
    snprintf(out, cap, "?");
    return;
  }
  strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
