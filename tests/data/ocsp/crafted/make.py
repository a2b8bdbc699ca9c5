#!/usr/bin/python3
"""Regenerates the certificates and OCSP answers in this folder that no real responder makes:
the DER of each answer is written here by hand and signed with python3-cryptography (Debian's
/usr/bin/python3). The unit tests verify them at a time inside their validity (thisUpdate plus
60 s), so they never go stale. Keys are not kept.

  ca.pem ca.der ca.p7c    the CA; as DER and as a certs-only PKCS#7 that also holds stranger.pem
  stranger.pem            an unrelated self-signed CA
  leaf.pem                serial 0x3001, crafted.example, AIA OCSP and caIssuers URLs
  resp.pem                delegated responder (OCSPSigning), O=Stapler Tests, CN=Crafted OCSP
                          Responder, as UTF8Strings
  resp-short.pem          delegated responder valid for one day after thisUpdate
  resp-critical.pem       delegated responder with an unknown critical extension
  good-short-signer.der   good, nextUpdate in 7 days, signed by resp-short (expires first)
  byname-canonical.der    good, responderID byName spelled in other case, spacing and string
                          type than resp.pem's subject (the same name per RFC 5280 7.1)
  critical-signer.der     good, signed by resp-critical
  other-single-critical.der  two answers: one for serial 0x3999 with a critical extension,
                          then a plain good one for leaf.pem
  own-single-critical.der one answer, for leaf.pem, with a critical extension
  san-ip-only.pem         CN=localhost, subjectAltName with an IP address only
  no-names.pem            no subjectAltName, a CN that is not a host name
  https-ocsp.pem          AIA OCSP URL over https only
  leaf-no-ca-issuers.pem  leaf without a caIssuers URL
"""
import datetime
import hashlib
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, AuthorityInformationAccessOID

HERE = os.path.dirname(os.path.abspath(__file__))
NOW = datetime.datetime.utcnow().replace(microsecond=0)
YEARS = datetime.timedelta(days=3650)
UNKNOWN_OID = "2.999.1"  # under the arc X.660 keeps for examples: nobody implements it


# ---- DER, by hand ------------------------------------------------------------------------------

def tlv(tag, body):
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def seq(*items):
    return tlv(0x30, b"".join(items))


def set_of(*items):
    return tlv(0x31, b"".join(items))


def oid(dotted):
    parts = [int(p) for p in dotted.split(".")]
    out = b""
    for p in [40 * parts[0] + parts[1]] + parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, out)


def integer(v):
    return tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def gentime(t):
    return tlv(0x18, t.strftime("%Y%m%d%H%M%SZ").encode())


def explicit(n, body):
    return tlv(0xA0 | n, body)


def octets(b):
    return tlv(0x04, b)


def extension(dotted, value, critical):
    return seq(oid(dotted), tlv(0x01, b"\xff") if critical else b"", octets(value))


# ---- certificates ------------------------------------------------------------------------------

def new_key():
    return ec.generate_private_key(ec.SECP256R1())


def name(cn, org=None):
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def certificate(subject, key, issuer, issuer_key, serial, not_before, not_after, exts):
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject if issuer
                                                                      else subject)
         .public_key(key.public_key()).serial_number(serial)
         .not_valid_before(not_before).not_valid_after(not_after))
    for ext, critical in exts:
        b = b.add_extension(ext, critical)
    return b.sign(issuer_key or key, hashes.SHA256())


def leaf_exts(dns=("crafted.example",), ips=(), ocsp="http://127.0.0.1:9/",
              ca_issuers="http://127.0.0.1:9/ca.der"):
    import ipaddress
    exts = [(x509.BasicConstraints(ca=False, path_length=None), True)]
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        exts.append((x509.SubjectAlternativeName(sans), False))
    access = []
    if ocsp:
        access.append(x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                             x509.UniformResourceIdentifier(ocsp)))
    if ca_issuers:
        access.append(x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                             x509.UniformResourceIdentifier(ca_issuers)))
    if access:
        exts.append((x509.AuthorityInformationAccess(access), False))
    return exts


def responder_exts(critical_unknown=False):
    exts = [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False)]
    if critical_unknown:
        exts.append((x509.UnrecognizedExtension(x509.ObjectIdentifier(UNKNOWN_OID), b"\x05\x00"),
                     True))
    return exts


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def write(fname, data):
    with open(os.path.join(HERE, fname), "wb") as f:
        f.write(data)


def write_pem(fname, cert):
    write(fname, cert.public_bytes(serialization.Encoding.PEM))


# ---- OCSP answers ------------------------------------------------------------------------------

SHA1 = "1.3.14.3.2.26"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
OCSP_BASIC = "1.3.6.1.5.5.7.48.1.1"


def cert_id(ca, serial):
    name_der = ca.subject.public_bytes()
    key = ca.public_key().public_bytes(serialization.Encoding.X962,
                                       serialization.PublicFormat.UncompressedPoint)
    return seq(seq(oid(SHA1), b"\x05\x00"), octets(hashlib.sha1(name_der).digest()),
               octets(hashlib.sha1(key).digest()), integer(serial))


def single(ca, serial, this_update, next_update, critical_ext=False):
    exts = b""
    if critical_ext:
        exts = explicit(1, seq(extension(UNKNOWN_OID, b"\x05\x00", True)))
    return seq(cert_id(ca, serial), tlv(0x80, b""), gentime(this_update),
               explicit(0, gentime(next_update)), exts)


def answer(singles, signer, signer_key, responder_name=None):
    rid = explicit(1, responder_name or signer.subject.public_bytes())
    tbs = seq(rid, gentime(NOW), seq(*singles))
    sig = signer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    basic = seq(tbs, seq(oid(ECDSA_SHA256)), tlv(0x03, b"\x00" + sig),
                explicit(0, seq(der(signer))))
    return seq(tlv(0x0A, b"\x00"), explicit(0, seq(oid(OCSP_BASIC), octets(basic))))


def printable(s):
    return tlv(0x13, s.encode())


def main():
    ca_key = new_key()
    ca = certificate(name("Crafted CA"), ca_key, None, None, 1, NOW - YEARS // 10, NOW + 2 * YEARS,
                     [(x509.BasicConstraints(ca=True, path_length=None), True)])
    stranger_key = new_key()
    stranger = certificate(name("Crafted stranger CA"), stranger_key, None, None, 2,
                           NOW - YEARS // 10, NOW + 2 * YEARS,
                           [(x509.BasicConstraints(ca=True, path_length=None), True)])

    def issue(fname, subject, serial, exts, not_after=NOW + YEARS, key=None):
        key = key or new_key()
        cert = certificate(subject, key, ca, ca_key, serial, NOW - datetime.timedelta(hours=1),
                           not_after, exts)
        write_pem(fname, cert)
        return cert, key

    leaf, _ = issue("leaf.pem", name("crafted.example"), 0x3001, leaf_exts())
    issue("leaf-no-ca-issuers.pem", name("crafted.example"), 0x3002,
          leaf_exts(ca_issuers=None))
    resp, resp_key = issue("resp.pem", name("Crafted OCSP Responder", "Stapler Tests"), 0x4001,
                           responder_exts())
    short, short_key = issue("resp-short.pem", name("Crafted short-lived responder"), 0x4002,
                             responder_exts(), not_after=NOW + datetime.timedelta(days=1))
    crit, crit_key = issue("resp-critical.pem", name("Crafted responder with a critical "
                                                     "extension"), 0x4003,
                           responder_exts(critical_unknown=True))
    issue("san-ip-only.pem", name("localhost"), 0x5001, leaf_exts(dns=(), ips=("127.0.0.1",)))
    issue("no-names.pem", name("stapler test user"), 0x5002, leaf_exts(dns=()))
    issue("https-ocsp.pem", name("crafted.example"), 0x5003,
          leaf_exts(ocsp="https://127.0.0.1:9/", ca_issuers=None))
    write_pem("ca.pem", ca)
    write_pem("stranger.pem", stranger)
    write("ca.der", der(ca))
    write("ca.p7c", pkcs7.serialize_certificates([stranger, ca], serialization.Encoding.DER))

    week = NOW + datetime.timedelta(days=7)
    later = NOW + YEARS
    write("good-short-signer.der", answer([single(ca, 0x3001, NOW, week)], short, short_key))
    # The same Name as resp.pem's subject, compared as RFC 5280 7.1 says: case and runs of
    # spaces differ, and PrintableString stands where the certificate has UTF8String.
    odd_name = seq(set_of(seq(oid("2.5.4.10"), printable("stapler   TESTS"))),
                   set_of(seq(oid("2.5.4.3"), printable(" crafted ocsp  RESPONDER "))))
    write("byname-canonical.der", answer([single(ca, 0x3001, NOW, later)], resp, resp_key,
                                         responder_name=odd_name))
    write("critical-signer.der", answer([single(ca, 0x3001, NOW, later)], crit, crit_key))
    write("other-single-critical.der",
          answer([single(ca, 0x3999, NOW, later, critical_ext=True),
                  single(ca, 0x3001, NOW, later)], resp, resp_key))
    write("own-single-critical.der",
          answer([single(ca, 0x3001, NOW, later, critical_ext=True)], resp, resp_key))


if __name__ == "__main__":
    main()
