#!/bin/sh
# Builds Debian's own BoringSSL (the android-platform-external-boringssl source package, the
# exact version of the installed android-libboringssl-dev) without -DOPENSSL_SMALL, into OUT:
# libcrypto.so.0 and libssl.so.0, ABI-identical to the Debian ones, with the P-256 assembly
# and tables that OPENSSL_SMALL leaves out (ECDSA P-256 signing ~3.5x faster).
#   docker/build-boringssl.sh OUT
# Needs root the first time (deb-src entry, build packages). Used by `make BORINGSSL=fast`
# and by docker/Dockerfile.
set -eu
out=$1
pkg=android-platform-external-boringssl
version=$(dpkg-query -W -f='${Version}' android-libboringssl-dev 2>/dev/null || true)
[ -n "$version" ] || { echo "build-boringssl: install android-libboringssl-dev first" >&2; exit 1; }
if [ -f "$out/BUILD-INFO" ] && grep -q "^$pkg $version " "$out/BUILD-INFO"; then
  exit 0 # already built from this version
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else
    echo "build-boringssl: needs root for: $*" >&2; exit 1
  fi
}

# The source package and what building it needs.
missing=""
for p in dpkg-dev g++ make; do
  dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] || as_root env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends $missing >/dev/null
src="$out/src"
rm -rf "$src" "$out/dl"
mkdir -p "$out/dl"
fetch() { (cd "$out/dl" && apt-get source -q --download-only "$pkg=$version" >/dev/null 2>&1); }
if ! fetch; then
  # No deb-src entry yet: one for each deb entry apt already has (deb822 or one-line).
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      > /tmp/stapler-deb-src.sources
    as_root cp /tmp/stapler-deb-src.sources /etc/apt/sources.list.d/stapler-deb-src.sources
  elif grep -q '^deb ' /etc/apt/sources.list 2>/dev/null; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /tmp/stapler-deb-src.list
    as_root cp /tmp/stapler-deb-src.list /etc/apt/sources.list.d/stapler-deb-src.list
  else
    echo "build-boringssl: no apt source to derive a deb-src entry from" >&2; exit 1
  fi
  as_root apt-get update -q >/dev/null
  fetch || { echo "build-boringssl: cannot download $pkg=$version" >&2; exit 1; }
fi
dpkg-source --no-check -x "$out"/dl/*.dsc "$src" >/dev/null
rm -rf "$out/dl" "$out"/*.tar.*

# Debian's own makefiles and flags, minus OPENSSL_SMALL. libssl finds libcrypto beside itself.
cd "$src"
flags="-DNDEBUG -DBORINGSSL_ANDROID_SYSTEM -DBORINGSSL_IMPLEMENTATION -DBORINGSSL_SHARED_LIBRARY \
-fno-strict-aliasing -fPIC"
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
jobs=$(nproc)
CC=gcc CFLAGS="-O2 -g -fPIC" CPPFLAGS="$flags" DEB_HOST_ARCH=$arch \
  make -s -f debian/libcrypto.mk -j"$jobs" build
CXX=g++ CXXFLAGS="-O2 -g -fPIC" CPPFLAGS="$flags" DEB_HOST_ARCH=$arch DEB_HOST_MULTIARCH=$multiarch \
  LDFLAGS="-Wl,-rpath,\$ORIGIN" make -s -f debian/libssl.mk -j"$jobs" build
cp debian/out/libcrypto.so.0 debian/out/libssl.so.0 "$out/"
cd "$out"
rm -rf "$src"
echo "$pkg $version rebuilt without OPENSSL_SMALL ($(date -u +%Y-%m-%d))" > "$out/BUILD-INFO"
echo "build-boringssl: $out: $(cat "$out/BUILD-INFO")"
