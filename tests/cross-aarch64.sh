#!/usr/bin/env bash
# Check the aarch64 context switch on any machine: build tests/runtime/test_ctx.c (which
# needs only libc) with the aarch64 cross compiler, with branch protection on, and run it
# under qemu-user, with a CPU that has BTI and PAC ("-cpu max").
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
aarch64-linux-gnu-gcc -std=c11 -O2 -static -D_GNU_SOURCE -DGREEN_HAVE_ASM=1 \
    -mbranch-protection=standard -Wall -Wextra -Werror -Iruntime -Itests/lib \
    tests/runtime/test_ctx.c runtime/green_ctx.c runtime/green_ctx_aarch64.S \
    tests/lib/testlib.c -lm -o "$out/test_ctx"
qemu-aarch64 -cpu max "$out/test_ctx"
echo "aarch64 context switch: ok"
