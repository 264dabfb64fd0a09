#!/bin/bash
# tests/integration/build_concurrency.sh: two `aqs build` processes of the same recipe at once
# on one store produce one result (the same build record) and a store that verifies.
source "$(dirname "$0")/build_common.bash"

"${B[@]}" build --no-checkout "${BUILD_ARGS[@]}" recipe fast50 >"$TMP/a.out" 2>&1 &
pa=$!
"${B[@]}" build --no-checkout "${BUILD_ARGS[@]}" recipe fast50 >"$TMP/b.out" 2>&1 &
pb=$!
wait $pa || fail "first concurrent build: $(cat "$TMP/a.out")"
wait $pb || fail "second concurrent build: $(cat "$TMP/b.out")"
rec=$("${B[@]}" show --json fast50 | jq -r .build_record)
out=$("${B[@]}" build --json --no-checkout "${BUILD_ARGS[@]}" recipe fast50) || fail "rebuild"
expect_eq "$(echo "$out" | jq -r '.[0].build_record')" "$rec" "build record after concurrent builds"
expect_eq "$(stage_states "$out" fast50)" \
  "source=HIT calib-set=HIT calibrate=HIT sensitivity=HIT slice=HIT export=HIT" "rebuild after concurrent builds"
"${B[@]}" verify >/dev/null || fail "verify after concurrent builds"
pass "two concurrent builds: one result $rec, store verifies"
