#!/usr/bin/env bash
# Every C source and header the repository tracks must be formatted as .clang-format says.
# Prints the files that differ (and how, with -v) and exits 1 if there is any; fix them with
#   clang-format -i $(git ls-files '*.c' '*.h')
# Usage: tests/check-format.sh [-v]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "check-format: clang-format is not installed" >&2; exit 2; }
bad=()
while IFS= read -r f; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files '*.c' '*.h')
if [ ${#bad[@]} -gt 0 ]; then
  echo "check-format: ${#bad[@]} file(s) differ from .clang-format:" >&2
  for f in "${bad[@]}"; do
    echo "  $f" >&2
    [ "${1:-}" = -v ] && clang-format --dry-run "$f" 2>&1 | head -20 >&2
  done
  echo "fix with: clang-format -i \$(git ls-files '*.c' '*.h')" >&2
  exit 1
fi
echo "check-format: $(git ls-files '*.c' '*.h' | wc -l) files formatted as .clang-format says"
