#!/usr/bin/env bash
# browser.sh WORKERD WORKERD_WEB BUILD_DIR - the dashboard's end-to-end test in Debian's
# chromium (headless): starts a private redis-server, a workerd (-E, heartbeat every
# second) and workerd-web on free loopback ports, installs puppeteer-core from npm into
# BUILD_DIR/node (once; never a browser), runs browser.mjs, and stops what it started.
# Screenshots of every page go to BUILD_DIR/screenshots/. Fails when chromium, node or npm
# is missing: a browser test that cannot run must not pass.
set -euo pipefail
workerd=$1 web=$2 build=$3
here=$(cd "$(dirname "$0")" && pwd)
chromium=$(command -v chromium || true)
[ -n "$chromium" ] || { echo "FAIL: chromium is not installed (tests/install-deps.sh installs it)" >&2; exit 1; }
command -v node >/dev/null && command -v npm >/dev/null ||
  { echo "FAIL: node and npm are needed to drive chromium (tests/install-deps.sh)" >&2; exit 1; }

mods=$build/node
if [ ! -d "$mods/node_modules/puppeteer-core" ]; then
  mkdir -p "$mods"
  PUPPETEER_SKIP_DOWNLOAD=1 npm install --prefix "$mods" --no-audit --no-fund --loglevel=error \
    puppeteer-core@24 >&2
fi

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/workerd-web-browser.XXXXXX")
pids=()
cleanup() {
  # The last started first: workerd stops warm while its Redis is still there.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$dir"
}
trap cleanup EXIT
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
  >"$dir/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 500); do redis-cli -p "$rport" PING >/dev/null 2>&1 && break; sleep 0.02; done
"$workerd" -b "redis://127.0.0.1:$rport/0" -E --heartbeat 1 -c 20 >"$dir/workerd.log" 2>&1 &
pids+=($!)
wport=$(free_port)
"$web" -b "redis://127.0.0.1:$rport/0" --listen "127.0.0.1:$wport" >"$dir/web.log" 2>&1 &
pids+=($!)
for _ in $(seq 500); do
  grep -q "ready: consuming" "$dir/workerd.log" && grep -q "serving http" "$dir/web.log" && break
  sleep 0.02
done
mkdir -p "$build/screenshots"
status=0
NODE_MODULES="$mods/node_modules" CHROMIUM="$chromium" WEB_URL="http://127.0.0.1:$wport" \
  REDIS_PORT="$rport" SHOT_DIR="$build/screenshots" \
  node "$here/browser.mjs" || status=$?
if [ $status -ne 0 ]; then
  echo "--- workerd-web log"; cat "$dir/web.log"; echo "--- workerd log"; tail -20 "$dir/workerd.log"
fi >&2
exit $status
