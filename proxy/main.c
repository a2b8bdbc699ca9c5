/* Command line: run, check a config, or show version/help. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/check.h"
#include "stapler/generation.h"
#include "stapler/log.h"
#include "stapler/ocsp_cli.h"
#include "stapler/server.h"
#include "stapler/tls.h"
#include "stapler/util.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: stapler [-c FILE]            run (without -c: a local development default)\n"
          "       stapler -t -c FILE           check a configuration and its certificates\n"
          "       stapler ocsp CERT.pem [--issuer ISSUER.pem] [--url URL] [-o OUT.der]\n"
          "                                    fetch, verify and show one OCSP response\n"
          "       stapler --version | --help\n"
          "\n"
          "Signals: SIGTERM/SIGINT drain connections and exit.\n"
          "Example configurations: config/stapler.yaml, config/phoenix.yaml.\n");
}

static void print_fingerprint(const struct cert *c) {
  char key[32];
  certinfo_key_desc(&c->info, key, sizeof key);
  char hex[3 * 32];
  for (int i = 0; i < 32; i++) snprintf(hex + 3 * i, 4, "%02X%s", c->fingerprint[i], i < 31 ? ":" : "");
  log_info("  %s self-signed for localhost, SHA-256 %s", key, hex);
}

static struct generation *load(const char *path) {
  struct strlist errors = {0}, warnings = {0};
  time_t now = wall_now();
  struct generation *gen = path ? generation_load(1, path, now, &errors, &warnings)
                                : generation_default(now, &errors);
  log_strlist(LOG_WARN, "", &warnings);
  log_strlist(LOG_ERROR, "", &errors);
  strlist_free(&errors);
  strlist_free(&warnings);
  return gen;
}

static int run(const char *path) {
  struct generation *gen = load(path);
  if (!gen) {
    log_error("not started: fix the problems above (check with: stapler -t -c %s)",
              path ? path : "FILE");
    return 1;
  }
  log_configure(gen->cfg->log.level, gen->cfg->log.format);
  if (!path) {
    log_info("no config file given: serving https://localhost:8443/ and forwarding to "
             "http://127.0.0.1:4000 (a Phoenix dev server's port) with new certificates:");
    for (size_t i = 0; i < gen->certs->cert_count; i++) print_fingerprint(gen->certs->certs[i]);
    log_info("run 'stapler -c FILE' for a real setup; config/stapler.yaml documents every key");
  }
  return server_run(gen, path);
}

int main(int argc, char **argv) {
  static const struct option options[] = {
      {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 't'},
      {"help", no_argument, NULL, 'h'},         {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0},
  };
  if (argc > 1 && !strcmp(argv[1], "ocsp")) return ocsp_cli_main(argc - 1, argv + 1);
  const char *path = NULL;
  bool check = false;
  int opt;
  while ((opt = getopt_long(argc, argv, "c:thV", options, NULL)) != -1) {
    switch (opt) {
    case 'c': path = optarg; break;
    case 't': check = true; break;
    case 'h': usage(stdout); return 0;
    case 'V': {
      char tls[768];
      tls_library_description(tls, sizeof tls);
      printf("stapler %s\n%s\n", STAPLER_VERSION, tls);
      return 0;
    }
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "stapler: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  if (check) {
    if (!path) {
      fprintf(stderr, "stapler: -t needs -c FILE\n");
      return 2;
    }
    return check_config(path, stdout, stderr);
  }
  return run(path);
}
