#!/bin/sh
# Regenerates the OCSP vectors in this folder with the openssl CLI. The unit tests verify them at
# a time inside their validity (thisUpdate + 60 s), so they never go stale.
set -eu
cd "$(dirname "$0")"
rm -f ./*.pem ./*.key ./*.der index.txt ./*.ext
O=openssl
key() { $O genpkey -algorithm "$2" $3 -out "$1.key" 2>/dev/null; }
ext() { printf '[x]\n%s\n' "$2" > "$1.ext"; }
sign() { # name subject issuer serial extensions
  ext "$1" "$5"
  $O req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  $O x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -set_serial "$4" -days 7300 -sha256 \
    -extfile "$1.ext" -extensions x -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
CA_EXT='basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign'
key ca EC "-pkeyopt ec_paramgen_curve:P-256"
$O req -x509 -new -key ca.key -subj "/CN=vector CA" -days 7300 -sha256 -set_serial 1 \
  -addext "basicConstraints=critical,CA:TRUE" -out ca.pem
key stranger RSA "-pkeyopt rsa_keygen_bits:2048"
$O req -x509 -new -key stranger.key -subj "/CN=stranger CA" -days 7300 -sha256 -set_serial 2 \
  -addext "basicConstraints=critical,CA:TRUE" -out stranger.pem
LEAF_EXT='basicConstraints=critical,CA:FALSE
subjectAltName=DNS:vector.example
authorityInfoAccess=OCSP;URI:http://127.0.0.1:9/'
key leaf RSA "-pkeyopt rsa_keygen_bits:2048"; sign leaf leaf ca 0x1001 "$LEAF_EXT"
key revoked EC "-pkeyopt ec_paramgen_curve:P-256"; sign revoked revoked ca 0x1002 "$LEAF_EXT"
key unknown EC "-pkeyopt ec_paramgen_curve:P-256"; sign unknown unknown ca 0x1003 "$LEAF_EXT"
key resp EC "-pkeyopt ec_paramgen_curve:P-256"
sign resp "vector responder" ca 0x2001 'extendedKeyUsage=OCSPSigning'
key noeku EC "-pkeyopt ec_paramgen_curve:P-256"
sign noeku "vector responder without EKU" ca 0x2002 'extendedKeyUsage=serverAuth'
key rsaresp RSA "-pkeyopt rsa_keygen_bits:2048"
sign rsaresp "vector RSA-PSS responder" ca 0x2003 'extendedKeyUsage=OCSPSigning'
printf 'V\t391231235959Z\t\t1001\tunknown\t/CN=leaf\nR\t391231235959Z\t260101000000Z,keyCompromise\t1002\tunknown\t/CN=revoked\n' > index.txt
resp() { # out signer-cert signer-key cert [extra...]
  out=$1 rs=$2 rk=$3 cert=$4; shift 4
  $O ocsp -index index.txt -rsigner "$rs" -rkey "$rk" -CA ca.pem "$@" -issuer ca.pem \
    -cert "$cert" -no_nonce -respout "$out" >/dev/null
}
resp good-delegated.der resp.pem resp.key leaf.pem -ndays 3650
resp good-issuer.der ca.pem ca.key leaf.pem -ndays 3650
resp good-sha256-certid.der resp.pem resp.key leaf.pem -ndays 3650 -sha256
resp good-rsa-pss.der rsaresp.pem rsaresp.key leaf.pem -ndays 3650 -rsigopt rsa_padding_mode:pss -rsigopt rsa_pss_saltlen:digest
resp good-sha384-sig.der resp.pem resp.key leaf.pem -ndays 3650 -rmd sha384
resp revoked.der resp.pem resp.key revoked.pem -ndays 3650
resp unknown.der resp.pem resp.key unknown.pem -ndays 3650
resp noeku.der noeku.pem noeku.key leaf.pem -ndays 3650
resp stranger.der stranger.pem stranger.key leaf.pem -ndays 3650
resp no-next-update.der resp.pem resp.key leaf.pem
resp by-key.der resp.pem resp.key leaf.pem -ndays 3650 -resp_key_id
$O ocsp -issuer ca.pem -cert leaf.pem -no_nonce -reqout request-sha1.der >/dev/null
cat leaf.pem ca.pem > leaf-chain.pem
rm -f ./*.key  # only the certificates and answers are needed by the tests
