#include "stapler/tls.h"

#include <dlfcn.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stapler/generation.h"
#include "stapler/log.h"
#include "stapler/qsbr.h"
#include "stapler/strbuf.h"
#include "stapler/tickets.h"
#include "stapler/util.h"

/* Mozilla's "intermediate" TLS 1.2 suites: forward secrecy and AEAD only. TLS 1.3 suites are
 * fixed by BoringSSL. */
static const char kCipherList[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
/* P-384 must stay listed: BoringSSL refuses a P-384 certificate whose curve it does not offer. */
static const char kCurves[] = "X25519:P-256:P-384";

/* ---- the BIO: BoringSSL reads from t->in and writes to the output chain ---------------------*/

static int bio_read(BIO *bio, char *out, int len) {
  struct tls_session *t = BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  struct buf *in = t->in;
  if (!in || in->off == in->len) {
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t n = MIN((size_t)len, in->len - in->off);
  memcpy(out, in->data + in->off, n);
  in->off += n;
  if (in->off == in->len) {
    buf_put(in);
    t->in = NULL;
  }
  return (int)n;
}

static int bio_write(BIO *bio, const char *data, int len) {
  struct tls_session *t = BIO_get_data(bio);
  BIO_clear_retry_flags(bio);
  bufchain_append(&t->out, t->pool, (const uint8_t *)data, (size_t)len);
  return len;
}

static long bio_ctrl(BIO *bio, int cmd, long larg, void *parg) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void make_bio_method(void) {
  bio_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "stapler");
  if (!bio_method || !BIO_meth_set_read(bio_method, bio_read) ||
      !BIO_meth_set_write(bio_method, bio_write) || !BIO_meth_set_ctrl(bio_method, bio_ctrl))
    die_oom();
}

/* ---- handshake callbacks ---------------------------------------------------------------------*/

static void set_refusal(struct tls_session *t, const char *text) {
  free(t->refusal);
  t->refusal = xstrdup(text);
}

/* Refuses a server_name that is not a host name, showing at most its first 255 bytes. */
static void refuse_sni(struct tls_session *t, const struct client_caps *caps) {
  char name[LOG_ESCAPED_SIZE(255)], text[sizeof name + 128];
  log_escape(name, sizeof name, (const char *)caps->bad_sni, MIN(caps->bad_sni_len, 255));
  snprintf(text, sizeof text, "SNI \"%s\" is not a host name (%s)", name, caps->sni_problem);
  set_refusal(t, text);
  t->select_failure = CERTSELECT_BAD_SNI;
}

/* BoringSSL refuses some server_names itself before the select-certificate callback runs (empty,
 * longer than 255 bytes, with a NUL byte), with an alert and no error to log. The message
 * callback sees the ClientHello before that, so those get their reason too. It removes itself
 * then: it would otherwise run for every record. */
static void on_message(int is_write, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg) {
  const uint8_t *msg = buf;
  if (is_write || content_type != SSL3_RT_HANDSHAKE || len < 4 || msg[0] != SSL3_MT_CLIENT_HELLO)
    return;
  SSL_set_msg_callback(ssl, NULL);
  struct client_caps caps;
  if (clienthello_parse(msg + 4, len - 4, &caps) && caps.sni_problem)
    refuse_sni(SSL_get_app_data(ssl), &caps);
}

static enum ssl_select_cert_result_t choose_certificate(const SSL_CLIENT_HELLO *hello) {
  struct tls_session *t = SSL_get_app_data(hello->ssl);
  struct client_caps caps;
  if (!clienthello_parse(hello->client_hello, hello->client_hello_len, &caps)) {
    t->select_failure = CERTSELECT_BAD_HELLO;
    return ssl_select_cert_error;
  }
  if (caps.sni_problem) {
    refuse_sni(t, &caps);
    return ssl_select_cert_error;
  }
  const struct config *cfg = t->gen->cfg;
  uint16_t version = certselect_version(&caps, cfg->tls.min_version, TLS1_3_VERSION);
  struct cert_candidates candidates;
  certstore_lookup(t->gen->certs, caps.sni[0] ? caps.sni : NULL, &candidates);
  struct cert_choice choice;
  t->status_requested = caps.status_request;
  if (!certselect_choose(&caps, version, &candidates, wall_now(), &choice, &t->select_failure))
    return ssl_select_cert_error;
  const struct cert *c = choice.cert;
  if (!SSL_set_chain_and_key(hello->ssl, c->chain, c->chain_len, c->key, NULL))
    return ssl_select_cert_error;
  t->cert = c;
  /* The staple is copied here, inside the read section: see qsbr.h for why that matters. */
  if (choice.staple) {
    if (!SSL_set_ocsp_response(hello->ssl, choice.staple->der, choice.staple->len))
      return ssl_select_cert_error;
    t->stapled = true;
  }
  return ssl_select_cert_success;
}

/* The staple read here may be replaced and freed by the control thread at any moment: the
 * whole choice is one qsbr read section. */
static enum ssl_select_cert_result_t select_certificate(const SSL_CLIENT_HELLO *hello) {
  qsbr_read_begin();
  enum ssl_select_cert_result_t r = choose_certificate(hello);
  qsbr_read_end();
  return r;
}

/* Refuses a client that offers none of tls.alpn, naming what it offers (1 KiB of it at most). */
static void refuse_alpn(struct tls_session *t, const uint8_t *in, unsigned in_len) {
  struct strbuf offered = {0};
  for (unsigned pos = 0; pos < in_len; pos += 1u + in[pos]) {
    if (offered.len > 1024) {
      strbuf_printf(&offered, ", ...");
      break;
    }
    char name[LOG_ESCAPED_SIZE(255)];
    log_escape(name, sizeof name, (const char *)in + pos + 1, MIN(in[pos], in_len - pos - 1));
    strbuf_printf(&offered, "%s\"%s\"", offered.len ? ", " : "", name);
  }
  struct strbuf text = {0};
  strbuf_printf(&text, "the client offers no protocol of tls.alpn (it offers %s)",
                offered.len ? offered.data : "none");
  set_refusal(t, text.data);
  strbuf_free(&text);
  strbuf_free(&offered);
}

/* Server preference: the first configured protocol the client also offers. A client offering
 * only protocols we lack gets no_application_protocol, as RFC 7301 3.2 asks. */
static int select_alpn(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
                       unsigned in_len, void *arg) {
  struct tls_session *t = SSL_get_app_data(ssl);
  const struct config_tls *tls = &t->gen->cfg->tls;
  for (size_t i = 0; i < tls->alpn_count; i++) {
    size_t want = strlen(tls->alpn[i]);
    for (unsigned pos = 0; pos < in_len;) {
      unsigned n = in[pos];
      if (pos + 1 + n > in_len) return SSL_TLSEXT_ERR_ALERT_FATAL;
      if (n == want && !memcmp(in + pos + 1, tls->alpn[i], n)) {
        *out = in + pos + 1;
        *out_len = (uint8_t)n;
        return SSL_TLSEXT_ERR_OK;
      }
      pos += 1 + n;
    }
  }
  refuse_alpn(t, in, in_len);
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* BoringSSL's clock (ticket lifetimes, session expiry) is stapler's, so tests that move
 * stapler's clock move this one too. */
static void current_time(const SSL *ssl, struct timeval *out) {
  uint64_t ms = wall_now_ms();
  out->tv_sec = (time_t)(ms / 1000);
  out->tv_usec = (suseconds_t)(ms % 1000) * 1000;
}

SSL_CTX *tls_ctx_new(const struct config *cfg, struct strlist *errors) {
  pthread_once(&bio_once, make_bio_method);
  SSL_CTX *ctx = SSL_CTX_new(TLS_with_buffers_method());
  if (!ctx || !SSL_CTX_set_min_proto_version(ctx, cfg->tls.min_version) ||
      !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
      !SSL_CTX_set_strict_cipher_list(ctx, kCipherList) ||
      !SSL_CTX_set1_curves_list(ctx, kCurves)) {
    strlist_add(errors, "cannot set up TLS: %s", tls_error_string());
    SSL_CTX_free(ctx);
    return NULL;
  }
  SSL_CTX_set_current_time_cb(ctx, current_time);
  SSL_CTX_set_select_certificate_cb(ctx, select_certificate);
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
  /* Resumption through tickets only: no server-side session cache shared across threads. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
  if (cfg->tls.session_tickets)
    tickets_setup_ctx(ctx); /* keys shared by all workers and generations */
  else
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  return ctx;
}

bool tls_session_init(struct tls_session *t, struct generation *gen, struct bufpool *pool) {
  memset(t, 0, sizeof *t);
  t->gen = gen;
  t->pool = pool;
  t->ssl = SSL_new(gen->ssl_ctx);
  BIO *bio = BIO_new(bio_method);
  if (!t->ssl || !bio) {
    SSL_free(t->ssl);
    BIO_free(bio);
    t->ssl = NULL;
    return false;
  }
  BIO_set_data(bio, t);
  BIO_set_init(bio, 1);
  SSL_set_bio(t->ssl, bio, bio);
  SSL_set_app_data(t->ssl, t);
  SSL_set_msg_callback(t->ssl, on_message);
  SSL_set_accept_state(t->ssl);
  SSL_set_shed_handshake_config(t->ssl, 1);
  return true;
}

void tls_session_free(struct tls_session *t) {
  SSL_free(t->ssl);
  t->ssl = NULL;
  free(t->refusal);
  t->refusal = NULL;
  if (t->in) buf_put(t->in);
  t->in = NULL;
  bufchain_clear(&t->out);
}

void tls_feed(struct tls_session *t, struct buf *b) {
  if (t->in) buf_put(t->in); /* callers feed only when the previous input is consumed */
  t->in = b;
}

bool tls_has_input(const struct tls_session *t) { return t->in != NULL; }

bool tls_write(struct tls_session *t, const uint8_t *data, size_t len) {
  while (len > 0) {
    int chunk = (int)MIN(len, (size_t)1 << 30);
    int n = SSL_write(t->ssl, data, chunk);
    if (n <= 0) return false; /* the BIO never blocks, so this is a real error */
    data += n;
    len -= (size_t)n;
  }
  return true;
}

void tls_library_description(char *out, size_t cap) {
  Dl_info info;
  if (!dladdr((void *)SSL_new, &info) || !info.dli_fname) {
    snprintf(out, cap, "BoringSSL (location unknown)");
    return;
  }
  /* A build made by docker/build-boringssl.sh says what it is beside the libraries. */
  char dir[512], line[256] = "";
  snprintf(dir, sizeof dir, "%s", info.dli_fname);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  char path[600];
  snprintf(path, sizeof path, "%s/BUILD-INFO", dir);
  FILE *f = fopen(path, "r");
  if (f) {
    if (!fgets(line, sizeof line, f)) line[0] = '\0';
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
  }
  snprintf(out, cap, "BoringSSL %s (%s)", info.dli_fname,
           line[0] ? line : "Debian's build, with OPENSSL_SMALL");
}

const char *tls_error_string(void) {
  uint32_t err = ERR_get_error();
  ERR_clear_error();
  if (!err) return "no details";
  const char *reason = ERR_reason_error_string(err);
  return reason ? reason : "unknown error";
}
