#!/bin/bash
# tests/integration/build_crash.sh: a build killed with SIGKILL midway, then re-run, completes
# with the same outputs as an uninterrupted build in a fresh store; the store verifies.
source "$(dirname "$0")/build_common.bash"

sweep=(fast10 fast50 fast90)
"$AQS" --store "$TMP/ref" init >/dev/null
ref=$("$AQS" --store "$TMP/ref" build --json --no-checkout "${BUILD_ARGS[@]}" recipe "${sweep[@]}") || fail "reference build"
for delay in 0.3 0.8 1.5; do
  "${B[@]}" build --no-checkout "${BUILD_ARGS[@]}" recipe "${sweep[@]}" >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
done
out=$("${B[@]}" build --json --no-checkout "${BUILD_ARGS[@]}" recipe "${sweep[@]}") || fail "build after kills"
for i in 0 1 2; do
  expect_eq "$(echo "$out" | jq -r ".[$i].stages[5].result")" "$(echo "$ref" | jq -r ".[$i].stages[5].result")" \
    "checkpoint of ${sweep[$i]} after kills"
done
"${B[@]}" verify >/dev/null || fail "verify after kills"
pass "builds killed at 0.3s, 0.8s, 1.5s; the re-run completes with the reference checkpoints"
