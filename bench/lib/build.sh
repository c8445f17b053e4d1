# Sourced by the bench scripts, from the top of the source tree: the workerd a bench
# measures, and the packages a bench needs.

# bench_build_workerd: unless WORKERD_BIN is already set (a workerd built elsewhere, to
# measure as it is), builds workerd (Release) in ${BENCH_BUILD_DIR:-build-release} and
# sets WORKERD_BIN to it, as an absolute path.
bench_build_workerd() {
  [ -n "${WORKERD_BIN:-}" ] && return 0
  local build=${BENCH_BUILD_DIR:-build-release}
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target workerd >/dev/null
  case $build in
    /*) WORKERD_BIN=$build/daemon/workerd ;;
    *) WORKERD_BIN=$PWD/$build/daemon/workerd ;;
  esac
}

# bench_install_deps: the test suite's packages (tests/install-deps.sh) and python3-redis,
# installing only what is missing (with sudo when not root).
bench_install_deps() {
  tests/install-deps.sh
  if ! dpkg-query -W -f='${Status}' python3-redis 2>/dev/null | grep -q "install ok installed"; then
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        python3-redis >/dev/null
  fi
}

# bench_machine_line: prints "# machine: N CPUs (model), Linux release; workerd: PATH".
bench_machine_line() {
  local cpu
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  echo "# machine: $(nproc) CPUs ($cpu), Linux $(uname -r); workerd: $WORKERD_BIN"
}
