#!/usr/bin/env bash
# docs/SPEC.md §2 / docs/seeds/002.txt §2.1 gate: threshold constants are defined only in the config
# module. Prints each offending line and exits 1 when a `*THRESHOLD* =` style
# constant appears in Python code outside services/runtime/config/.
set -euo pipefail
root="${1:-services}"
hits=$(grep -rnE '^\s*[A-Z_]*THRESHOLD[A-Z_]*\s*(:[^=]+)?=[^=]' --include='*.py' "$root" \
  | grep -v '/runtime/config/' || true)
if [ -n "$hits" ]; then
  echo "threshold constants outside services/runtime/config/ (every threshold must live there):"
  echo "$hits"
  exit 1
fi
