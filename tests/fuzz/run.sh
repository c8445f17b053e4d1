#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz_msg, fuzz_result, fuzz_celery, fuzz_conffile) in a
# separate clang build directory, build-fuzz, and runs each for a bounded time on a copy of
# its seed corpus (tests/fuzz/corpus/<name>/ is never modified). Exits non-zero when any target
# finds a crash, a leak, undefined behaviour or a broken invariant; the reproducer is
# left in the work directory printed at the end.
#
# Usage: tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 60, all four)
# Reproduce a finding: build-fuzz/tests/fuzz/fuzz_msg crash-<sha1>
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_msg fuzz_result fuzz_celery fuzz_conffile)

CC=clang cmake -S . -B build-fuzz -DWORKERD_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}"

work=$(mktemp -d "${TMPDIR:-/tmp}/workerd-fuzz.XXXXXX")
status=0
for t in "${targets[@]}"; do
    name=${t#fuzz_}
    mkdir -p "$work/$name/corpus" "$work/$name/artifacts"
    cp tests/fuzz/corpus/"$name"/* "$work/$name/corpus/"
    # Longest input: messages need room for the deep-nesting seeds and for texts past the
    # 64 KiB id-salvage window; results cut the raw message at a fuzzed cap of at most
    # 64 KiB, so short inputs reach every path; Celery envelopes are read whole, their
    # limits checked on the whole text; config files are short.
    case $name in
        msg) max_len=100000 ;;
        result | celery) max_len=16384 ;;
        *) max_len=4096 ;;
    esac
    dict=()
    [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
    printf '\n==== %s for %ss\n' "$t" "$secs"
    if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        build-fuzz/tests/fuzz/"$t" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 \
        -max_len="$max_len" -print_final_stats=1 "${dict[@]}" \
        -artifact_prefix="$work/$name/artifacts/" "$work/$name/corpus" \
        >"$work/$name/log" 2>&1; then
        status=1
        echo "$t FAILED: see $work/$name/log; reproducer(s):"
        ls "$work/$name/artifacts/"
        tail -40 "$work/$name/log"
    fi
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb)' \
        "$work/$name/log" || true
done
if [ "$status" -eq 0 ]; then
    rm -rf "$work"
    echo "fuzzing: no findings"
else
    echo "fuzzing: findings kept in $work"
fi
exit "$status"
