#include "stapler/ocsp_cli.h"

#include <errno.h>
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "stapler/asn1time.h"
#include "stapler/certinfo.h"
#include "stapler/ocsp_fetch.h"
#include "stapler/ocsp_request.h"
#include "stapler/ocsp_verify.h"
#include "stapler/util.h"

#define CLI_TIMEOUT_MS 15000

struct fetched {
  int done, ok, http_status;
  uint8_t *body;
  size_t len;
  char error[256];
};

static void on_fetched(void *ctx, const struct ocsp_fetch_result *r) {
  struct fetched *f = ctx;
  f->done = 1;
  f->ok = r->ok;
  f->http_status = r->http_status;
  snprintf(f->error, sizeof f->error, "%s", r->error);
  if (r->ok) {
    f->body = xmalloc(r->body_len);
    memcpy(f->body, r->body, r->body_len);
    f->len = r->body_len;
  }
}

/* Reads up to two certificates from a PEM file. */
static int read_certs(const char *path, X509 **first, X509 **second) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "stapler ocsp: cannot read %s: %s\n", path, strerror(errno));
    return -1;
  }
  *first = PEM_read_X509(f, NULL, NULL, NULL);
  if (second) *second = *first ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
  ERR_clear_error();
  fclose(f);
  if (!*first) {
    fprintf(stderr, "stapler ocsp: no PEM certificate in %s\n", path);
    return -1;
  }
  return 0;
}

static const char *reason_name(int reason) {
  static const char *const names[] = {
      "unspecified",          "keyCompromise",   "cACompromise", "affiliationChanged",
      "superseded",           "cessationOfOperation", "certificateHold", "(7)",
      "removeFromCRL",        "privilegeWithdrawn",   "aACompromise"};
  if (reason < 0) return "not given";
  return (size_t)reason < sizeof names / sizeof names[0] ? names[reason] : "unknown reason";
}

static void print_time(const char *label, time_t t, time_t now) {
  char when[32];
  format_utc(t, when, sizeof when);
  long long d = (long long)(t - now);
  if (d > 0)
    printf("%-12s %s (in %lldh%02lldm)\n", label, when, d / 3600, d % 3600 / 60);
  else
    printf("%-12s %s (%lldh%02lldm ago)\n", label, when, -d / 3600, -d % 3600 / 60);
}

static void print_result(enum ocsp_error err, const struct ocsp_result *r, time_t now) {
  if (err != OCSP_OK && r->this_update == 0) {
    printf("verdict:     REFUSED (%s): %s\n", ocsp_error_name(err), r->detail);
    return;
  }
  if (err == OCSP_OK)
    printf("verdict:     verified, signed by %s%s\n", r->delegated ? "delegated responder " : "",
           r->responder);
  else
    printf("verdict:     REFUSED (%s): %s\n", ocsp_error_name(err), r->detail);
  if (r->status == OCSP_STATUS_REVOKED) {
    char when[32];
    format_utc(r->revocation_time, when, sizeof when);
    printf("status:      REVOKED at %s, reason %s\n", when, reason_name(r->revocation_reason));
  } else {
    printf("status:      %s\n", ocsp_cert_status_name(r->status));
  }
  print_time("producedAt:", r->produced_at, now);
  print_time("thisUpdate:", r->this_update, now);
  if (r->next_update)
    print_time("nextUpdate:", r->next_update, now);
  else
    printf("nextUpdate:  absent\n");
  /* A staple is good only as long as its signer: the earlier end is the one that counts. */
  if (r->signer_not_after) print_time("signer ends:", r->signer_not_after, now);
}

static void usage(void) {
  fprintf(stderr, "usage: stapler ocsp CERT.pem [--issuer ISSUER.pem] [--url URL] [-o OUT.der]\n"
                  "CERT.pem may hold the chain: the issuer is then the certificate after the "
                  "leaf.\n");
}

static int fetch_and_report(X509 *leaf, X509 *issuer, const char *url, const char *out_path) {
  uint8_t *req;
  size_t req_len;
  if (!ocsp_request_build(leaf, issuer, &req, &req_len)) {
    fprintf(stderr, "stapler ocsp: cannot build the request\n");
    return 1;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct fetched f = {0};
  char err[256];
  struct ocsp_fetch *fetch =
      ocsp_fetch_start(&loop, url, req, req_len, CLI_TIMEOUT_MS, on_fetched, &f, err, sizeof err);
  free(req);
  if (!fetch) {
    fprintf(stderr, "stapler ocsp: %s\n", err);
    uv_loop_close(&loop);
    return 1;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  printf("responder:   %s\n", url);
  if (!f.ok) {
    printf("HTTP:        %s\n", f.http_status ? "answered" : "no answer");
    printf("verdict:     FAILED: %s\n", f.error);
    return 1;
  }
  printf("HTTP:        %d (%zu bytes)\n", f.http_status, f.len);
  time_t now = wall_now();
  struct ocsp_result r;
  enum ocsp_error verdict = ocsp_verify(f.body, f.len, leaf, issuer, now, &r);
  print_result(verdict, &r, now);
  int rc = verdict == OCSP_OK && r.status == OCSP_STATUS_GOOD ? 0 : 1;
  if (verdict == OCSP_OK && out_path) {
    FILE *o = fopen(out_path, "wb");
    if (!o || fwrite(f.body, 1, f.len, o) != f.len || fclose(o) != 0) {
      fprintf(stderr, "stapler ocsp: cannot write %s: %s\n", out_path, strerror(errno));
      rc = 1;
    } else {
      printf("written:     %s\n", out_path);
    }
  }
  free(f.body);
  return rc;
}

int ocsp_cli_main(int argc, char **argv) {
  static const struct option options[] = {
      {"issuer", required_argument, NULL, 'i'}, {"url", required_argument, NULL, 'u'},
      {"out", required_argument, NULL, 'o'},    {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *issuer_path = NULL, *url = NULL, *out_path = NULL;
  int opt;
  optind = 1;
  while ((opt = getopt_long(argc, argv, "o:h", options, NULL)) != -1) {
    switch (opt) {
    case 'i': issuer_path = optarg; break;
    case 'u': url = optarg; break;
    case 'o': out_path = optarg; break;
    case 'h': usage(); return 0;
    default: usage(); return 2;
    }
  }
  if (optind != argc - 1) {
    usage();
    return 2;
  }
  X509 *leaf = NULL, *issuer = NULL, *second = NULL;
  int rc = 1;
  if (read_certs(argv[optind], &leaf, &second) != 0) goto out;
  if (issuer_path) {
    if (read_certs(issuer_path, &issuer, NULL) != 0) goto out;
  } else if (second) {
    issuer = second;
    second = NULL;
  } else {
    fprintf(stderr, "stapler ocsp: %s holds only the leaf: give --issuer ISSUER.pem\n",
            argv[optind]);
    goto out;
  }
  struct cert_info info;
  const char *bad = certinfo_read(leaf, &info);
  if (!url) url = info.ocsp_url;
  printf("certificate: %s\n", info.subject ? info.subject : "?");
  if (bad) printf("note:        %s\n", bad);
  if (!url) {
    fprintf(stderr, "stapler ocsp: the certificate has no OCSP URL; give --url\n");
  } else if (!certinfo_issued_by(leaf, issuer)) {
    fprintf(stderr, "stapler ocsp: the issuer certificate did not issue this certificate\n");
  } else {
    char *url_copy = xstrdup(url);
    rc = fetch_and_report(leaf, issuer, url_copy, out_path);
    free(url_copy);
  }
  certinfo_free(&info);
out:
  X509_free(leaf);
  X509_free(issuer);
  X509_free(second);
  return rc;
}
