/* `stapler ocsp CERT.pem [--issuer ISSUER.pem] [--url URL] [-o OUT.der]`: fetch and verify one
 * OCSP response and print it for a human. */
#ifndef STAPLER_OCSP_CLI_H
#define STAPLER_OCSP_CLI_H

/* argv[0] is "ocsp". Returns the exit code: 0 only for a verified "good" answer. */
int ocsp_cli_main(int argc, char **argv);

#endif
