#!/bin/sh
# deps.sh [cross] — install the Debian packages spikeq needs, only when something is missing.
# Native: libgomp (gcc), libsleef-dev, libcjson-dev, libcmocka-dev, libpcre2-dev, libxxhash-dev,
# libmicrohttpd-dev (the server), nginx-light (its load-balancer test).
# aarch64 cross tests: gcc-aarch64-linux-gnu, qemu-user and the arm64 multiarch -dev libs.
# fuzz: clang with libFuzzer (libclang-rt-14-dev) and LLVM's OpenMP (libomp-dev).
set -e
need=""
has_hdr() { [ -f "/usr/include/$1" ] || [ -f "/usr/include/x86_64-linux-gnu/$1" ]; }
has_hdr sleef.h || need="$need libsleef-dev"
has_hdr cjson/cJSON.h || need="$need libcjson-dev"
has_hdr cmocka.h || need="$need libcmocka-dev"
has_hdr pcre2.h || need="$need libpcre2-dev"
has_hdr xxhash.h || need="$need libxxhash-dev"
has_hdr microhttpd.h || need="$need libmicrohttpd-dev"
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need="$need nginx-light" # the server's replicas test
if [ "${1:-}" = fuzz ]; then
  command -v clang >/dev/null || need="$need clang"
  ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || need="$need libclang-rt-dev"
  ls /usr/lib/llvm-*/lib/libomp.so >/dev/null 2>&1 || need="$need libomp-dev"
fi
if [ "${1:-}" = cross ]; then
  command -v aarch64-linux-gnu-gcc >/dev/null || need="$need gcc-aarch64-linux-gnu"
  command -v qemu-aarch64 >/dev/null || need="$need qemu-user"
  arm=""
  [ -f /usr/lib/aarch64-linux-gnu/libsleef.so ] || arm="$arm libsleef-dev:arm64"
  [ -f /usr/lib/aarch64-linux-gnu/libcjson.so ] || arm="$arm libcjson-dev:arm64"
  [ -f /usr/lib/aarch64-linux-gnu/libcmocka.so ] || arm="$arm libcmocka-dev:arm64"
  [ -f /usr/lib/aarch64-linux-gnu/libpcre2-8.so ] || arm="$arm libpcre2-dev:arm64"
  [ -f /usr/lib/aarch64-linux-gnu/libxxhash.so ] || arm="$arm libxxhash-dev:arm64"
  [ -f /usr/lib/aarch64-linux-gnu/libmicrohttpd.so ] || arm="$arm libmicrohttpd-dev:arm64"
  if [ -n "$arm" ]; then
    dpkg --print-foreign-architectures | grep -q arm64 || { dpkg --add-architecture arm64; upd=1; }
    need="$need $arm"
  fi
fi
[ -z "$need" ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "deps: installing$need" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
