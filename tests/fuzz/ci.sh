#!/bin/bash
# tests/fuzz/ci.sh ASAN_BUILD_DIR: the hostile-input part of .ci/run. Builds the libFuzzer
# harnesses (tests/fuzz/build.sh) and runs each for AQS_FUZZ_SECONDS (30), then the
# hostile-input campaign (tests/fuzz/campaign.py) against ASAN_BUILD_DIR/aqs for
# AQS_CAMPAIGN_SECONDS (90) of mutated inputs and AQS_INDEX_SECONDS (35) of index damage.
# Fails on any crash or hang. Longer by hand, e.g.:
#   AQS_FUZZ_SECONDS=600 AQS_CAMPAIGN_SECONDS=1800 AQS_INDEX_SECONDS=900 tests/fuzz/ci.sh build-asan
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
ASAN=$(cd "${1:?usage: tests/fuzz/ci.sh ASAN_BUILD_DIR}" && pwd)
export OUT_DIR=${OUT_DIR:-$ASAN/fuzz}
start=$SECONDS
bash "$SRC/tests/fuzz/build.sh" >/dev/null
echo "fuzz: harnesses built in $((SECONDS - start))s" >&2
bash "$SRC/tests/fuzz/run.sh"
# Index damage must end in success or a clear error too (AQS_INDEX_STRICT=0 only counts it).
index_flags=()
[ "${AQS_INDEX_STRICT:-1}" = 1 ] && index_flags+=(--strict-index)
python3 "$SRC/tests/fuzz/campaign.py" --aqs "$ASAN/aqs" --budget-s "${AQS_CAMPAIGN_SECONDS:-90}" \
  --index-budget-s "${AQS_INDEX_SECONDS:-35}" --findings "$OUT_DIR/findings" \
  --report "$OUT_DIR/campaign.json" "${index_flags[@]}"
echo "fuzz: done in $((SECONDS - start))s" >&2
