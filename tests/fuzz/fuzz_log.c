/* The log line formatter: whatever bytes a message or a field value holds, each call writes
 * exactly one line of UTF-8, and in JSON that line is one valid JSON object; log_escape()
 * writes printable ASCII made of whole escapes only.
 *
 * The input: one byte of options, then the message and up to four field values, separated by
 * NUL bytes. log_escape() gets all of that after the options byte (up to 4 KiB), NUL bytes
 * included. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char captured[16384];
static size_t captured_len;
static int captured_lines;

static void capture(const char *line, size_t len) {
  if (len > sizeof captured - captured_len) {
    fprintf(stderr, "a log line of %zu bytes\n", len);
    abort();
  }
  memcpy(captured + captured_len, line, len);
  captured_len += len;
  captured_lines++;
}

static void fail(const char *why) {
  fprintf(stderr, "%s: %.*s\n", why, (int)captured_len, captured);
  abort();
}

/* RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool valid_utf8(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t len;
    unsigned cp, min;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += len;
  }
  return true;
}

/* A JSON string at *p (RFC 8259 7); moves past it. */
static bool json_string(const char **p, const char *end) {
  const char *s = *p;
  if (s == end || *s++ != '"') return false;
  while (s < end && *s != '"') {
    unsigned char c = (unsigned char)*s++;
    if (c < 0x20) return false;
    if (c != '\\') continue;
    if (s == end) return false;
    c = (unsigned char)*s++;
    if (c == 'u') {
      for (int k = 0; k < 4; k++, s++)
        if (s == end || !strchr("0123456789abcdefABCDEF", *s) || !*s) return false;
    } else if (!strchr("\"\\/bfnrt", c) || !c) {
      return false;
    }
  }
  if (s == end) return false;
  *p = s + 1;
  return true;
}

/* An integer, the only kind of number log lines hold. */
static bool json_integer(const char **p, const char *end) {
  const char *s = *p;
  if (s < end && *s == '-') s++;
  const char *digits = s;
  while (s < end && *s >= '0' && *s <= '9') s++;
  if (s == digits || (*digits == '0' && s - digits > 1)) return false;
  *p = s;
  return true;
}

/* The whole line is {"key":value,...} and a newline, values strings or integers. */
static bool json_line(const char *s, size_t n) {
  const char *end = s + n - 1; /* the newline */
  if (n < 3 || *end != '\n' || *s++ != '{') return false;
  for (bool first = true; s < end && *s != '}'; first = false) {
    if (!first && *s++ != ',') return false;
    if (!json_string(&s, end) || s == end || *s++ != ':') return false;
    if (!(s < end && *s == '"' ? json_string(&s, end) : json_integer(&s, end))) return false;
  }
  return s + 1 == end && *s == '}';
}

static void check_line(bool json) {
  if (captured_lines != 1) fail("not one line");
  if (!captured_len || captured[captured_len - 1] != '\n' ||
      memchr(captured, '\n', captured_len - 1))
    fail("a newline inside the line");
  for (size_t i = 0; i < captured_len - 1; i++)
    if ((unsigned char)captured[i] < 0x20 || captured[i] == 0x7f) fail("a control byte");
  if (!valid_utf8((const unsigned char *)captured, captured_len)) fail("not UTF-8");
  if (json && !json_line(captured, captured_len)) fail("not a JSON object");
  captured_len = 0;
  captured_lines = 0;
}

/* Printable ASCII, every backslash starting \\, \" or \xNN. */
static void check_escaped(const char *s, size_t n, size_t cap) {
  if (n >= cap || s[n] != '\0' || strlen(s) != n) abort();
  for (size_t i = 0; i < n; i++) {
    if (s[i] < 0x20 || s[i] > 0x7e) abort();
    if (s[i] != '\\') continue;
    if (i + 1 < n && (s[i + 1] == '\\' || s[i + 1] == '"')) {
      i++;
    } else if (i + 3 < n && s[i + 1] == 'x' && strchr("0123456789abcdef", s[i + 2]) &&
               strchr("0123456789abcdef", s[i + 3])) {
      i += 3;
    } else {
      abort();
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  log_set_sink(capture);
  uint8_t options = data[0];
  const char *text = (const char *)data + 1;
  size_t text_len = size - 1;

  static char escaped[LOG_ESCAPED_SIZE(4096)];
  size_t cap = options & 0x80 ? sizeof escaped : (size_t)(options & 0x3f) + 1;
  if (text_len <= 4096) check_escaped(escaped, log_escape(escaped, cap, text, text_len), cap);

  /* The message and the values, as C strings. */
  char *copy = malloc(text_len + 1);
  memcpy(copy, text, text_len);
  copy[text_len] = '\0';
  const char *parts[5] = {"", "", "", "", ""};
  size_t count = 0;
  for (char *p = copy; count < 5 && p <= copy + text_len; p += strlen(p) + 1) parts[count++] = p;
  const struct log_field fields[] = {
      LOG_STR("sni", parts[1]), LOG_NUM("status", (long long)options * 1000003 - 99),
      LOG_STR("path", parts[2]), LOG_STR("method", parts[3]), LOG_STR("x", parts[4]),
  };
  for (int json = 0; json < 2; json++) {
    log_configure(LOG_DEBUG, json ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
    log_msg(LOG_INFO, "%s", parts[0]);
    check_line(json);
    log_msg(LOG_ERROR, "client sent \"%s\"", parts[1]);
    check_line(json);
    log_fields(LOG_WARN, parts[0], fields, (size_t)(options & 7) % 6);
    check_line(json);
  }
  free(copy);
  return 0;
}
