#!/usr/bin/env bash
# scripts/main-job.sh AQS: the main job run by setup.sh (the demo once it exists; until then,
# aqs init plus a round trip through a scratch store).
set -euo pipefail
aqs="$(realpath "${1:-build/aqs}")"
if "$aqs" --help | grep -q '^  demo '; then
  exec "$aqs" demo
fi
store="$(mktemp -d)/store"
"$aqs" --store "$store" init
d=$("$aqs" --store "$store" put "$0")
"$aqs" --store "$store" cat "$d" | cmp - "$0"
echo "round trip through $store: $d"
"$aqs" --store "$store" stats
