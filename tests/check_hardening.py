#!/usr/bin/python3
"""Checks that a built stapler binary carries the hardening an internet-facing daemon should:
a position-independent executable (ELF type DYN), RELRO made complete by immediate binding
(GNU_RELRO and BIND_NOW), stack canaries (__stack_chk_fail) and fortified libc calls
(__*_chk), as read by readelf.

usage: check_hardening.py BINARY"""
import re
import subprocess
import sys


def readelf(*args):
    return subprocess.run(["readelf", "-W"] + list(args), capture_output=True, text=True,
                          check=True).stdout


def problems(binary):
    found = []
    if not re.search(r"^\s*Type:\s+DYN\b", readelf("-h", binary), re.M):
        found.append("not a position-independent executable (ELF type is not DYN): -fPIE -pie")
    if not re.search(r"^\s*GNU_RELRO\b", readelf("-l", binary), re.M):
        found.append("no GNU_RELRO segment: -Wl,-z,relro")
    dynamic = readelf("-d", binary)
    if not (re.search(r"\(FLAGS\)\s.*\bBIND_NOW\b", dynamic) or
            re.search(r"\(FLAGS_1\)\s.*\bNOW\b", dynamic)):
        found.append("no BIND_NOW: -Wl,-z,now")
    imported = set()
    for line in readelf("--dyn-syms", binary).splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[6] == "UND":
            imported.add(fields[7].split("@")[0])
    if "__stack_chk_fail" not in imported:
        found.append("__stack_chk_fail not imported: -fstack-protector-strong")
    checked = sorted(s for s in imported if re.fullmatch(r"__\w+_chk", s) and
                     s != "__stack_chk_fail")
    if not checked:
        found.append("no fortified libc call (__*_chk) imported: -D_FORTIFY_SOURCE=2 with -O")
    return found, checked


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    found, checked = problems(sys.argv[1])
    for p in found:
        print("%s: %s" % (sys.argv[1], p))
    if found:
        return 1
    print("%s: PIE, full RELRO, stack protector, fortified calls (%s)"
          % (sys.argv[1], ", ".join(checked)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
