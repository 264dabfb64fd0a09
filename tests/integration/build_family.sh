#!/bin/bash
# tests/integration/build_family.sh: a coverage sweep fast10 ... fast100 in one build: the family
# check passes, the planted outlier groups are the last ones quantized, aqs diff by recipe name
# proves top10 vs top50, the store stays within 1.6x the BF16 model, and a deliberately broken
# export (test hook) makes the family check fail loudly.
source "$(dirname "$0")/build_common.bash"

sweep=(fast10 fast20 fast30 fast40 fast50 fast60 fast70 fast80 fast90 fast100)
out=$("${B[@]}" build --json --no-checkout "${BUILD_ARGS[@]}" recipe "${sweep[@]}") || fail "sweep build"
runs=$(echo "$out" | jq '[.[] | .stages[] | select(.state == "RUN")] | length')
expect_eq "$runs" "24" "stages run by a 10-recipe sweep (4 shared + 10 slices + 10 exports)"
pass "sweep: one sensitivity run, ten slices and exports, family check passed"

# The planted groups stay BF16 in every scheme but top100.
for r in "${sweep[@]}"; do
  fp8=$("${B[@]}" show --json "$r" | jq -r '.plan.groups | to_entries[] | select(.value == "fp8") | .key')
  for g in $PLANTED; do
    if [ "$r" = fast100 ]; then
      grep -qx "$g" <<<"$fp8" || fail "$g should be FP8 in $r"
    else
      ! grep -qx "$g" <<<"$fp8" || fail "planted group $g is FP8 already in $r"
    fi
  done
done
n90=$("${B[@]}" show --json fast90 | jq '[.plan.groups[] | select(. == "bf16")] | length')
expect_eq "$n90" "2" "BF16 groups left in fast90 (the planted ones)"
pass "planted outlier groups are the last to be quantized"

model_bytes=$(stat -c %s "$TMP/model/model.safetensors")
stored=$(store_stat bytes_stored)
python3 -c "import sys; r=$stored/$model_bytes; print(f'store/model = {r:.3f}'); sys.exit(0 if r <= 1.6 else 1)" \
  || fail "store after the sweep holds $stored bytes, more than 1.6x the model ($model_bytes)"
pass "store after the sweep: $stored bytes for a $model_bytes-byte BF16 model"

"${B[@]}" diff fast10 fast50 >"$TMP/diff.txt" || fail "aqs diff fast10 fast50: $(cat "$TMP/diff.txt")"
pass "aqs diff by recipe name"

rc=0
AQS_TEST_BREAK_EXPORT=fast30 "${B[@]}" build --no-checkout "${BUILD_ARGS[@]}" recipe fast20 fast30 \
  >/dev/null 2>"$TMP/err" || rc=$?
expect_eq "$rc" "1" "exit status of a family build with a broken export"
expect_contains "$(cat "$TMP/err")" "family check failed" "broken export message"
expect_contains "$(cat "$TMP/err")" "fast30" "broken export names the recipe"
pass "a broken export fails the family check: $(cat "$TMP/err")"
