#!/usr/bin/env bash
# Install what building, running and testing workerd needs, from Debian 12's packages.
# Installs only what is missing; uses sudo when not run as root. Safe to run repeatedly.
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libev-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev libxml2-dev
  redis-server redis-tools redis-sentinel iproute2 faketime tzdata
  nginx-light libnginx-mod-http-echo
  valgrind clang clang-format libclang-rt-14-dev curl python3 bc
  python3-celery python3-gevent
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
  libcrypt-dev
)
# workerd-web's browser test: Debian's chromium, and node with npm (which installs
# puppeteer-core into the build directory; never a browser). A node that already brings
# its npm will do.
command -v chromium >/dev/null || packages+=(chromium)
command -v npm >/dev/null || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the services it installs where systemd runs; the tests and workerd's
# quick start start their own servers on their own ports, so these are not needed.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  $sudo systemctl disable --now nginx >/dev/null 2>&1 || true
fi
