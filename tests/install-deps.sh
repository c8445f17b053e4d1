#!/usr/bin/env bash
# Install what building, running and testing workerd needs, from Debian 12's packages.
# Installs only what is missing; uses sudo when not run as root. Safe to run repeatedly.
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libev-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev
  redis-server redis-tools redis-sentinel iproute2 faketime
  nginx-light libnginx-mod-http-echo
  valgrind clang clang-format libclang-rt-14-dev curl python3 bc
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
)
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
