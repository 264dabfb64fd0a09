#!/bin/bash
# tests/fuzz/run.sh: runs every libFuzzer harness built by tests/fuzz/build.sh for
# AQS_FUZZ_SECONDS each (default 30) on its seed corpus, two at a time, and fails if any finds a
# crash, leak or timeout (the reproducer is left in OUT_DIR/artifacts/). Prints executions per
# target. A longer run by hand: AQS_FUZZ_SECONDS=600 tests/fuzz/run.sh
set -uo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT_DIR:-$SRC/build-fuzz}
SECONDS_EACH=${AQS_FUZZ_SECONDS:-30}
JOBS=${AQS_FUZZ_JOBS:-2}
mkdir -p "$OUT/artifacts" "$OUT/logs"
run_one() {
  local name=$1
  # A scratch copy of the seeds: new corpus entries do not pile up between runs.
  rm -rf "$OUT/work_$name" && cp -r "$OUT/corpus_$name" "$OUT/work_$name"
  "$OUT/fuzz_$name" "$OUT/work_$name" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$OUT/artifacts/${name}-" >"$OUT/logs/$name.log" 2>&1
  local rc=$?
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/logs/$name.log")
  printf '%-12s %10s executions in %ss: %s\n' "$name" "${execs:-?}" "$SECONDS_EACH" \
    "$([ $rc -eq 0 ] && echo "0 crashes" || echo "FAILED (exit $rc, see $OUT/logs/$name.log)")"
  return $rc
}
names=()
for bin in "$OUT"/fuzz_*; do [ -x "$bin" ] && names+=("${bin##*/fuzz_}"); done
[ ${#names[@]} -gt 0 ] || { echo "tests/fuzz/run.sh: nothing built in $OUT (run tests/fuzz/build.sh)" >&2; exit 1; }
failed=0
pids=()
for name in "${names[@]}"; do
  run_one "$name" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if [ $failed -ne 0 ]; then
  for f in "$OUT"/logs/*.log; do grep -q -E "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error" "$f" && { echo "== $f"; grep -E -A30 "ERROR|runtime error" "$f" | head -60; }; done
fi
exit $failed
