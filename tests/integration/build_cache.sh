#!/bin/bash
# tests/integration/build_cache.sh: the action cache across builds: a second build of the same
# recipe is all hits and stores nothing; top60-like after top50-like runs only slice and export
# and stores no tensor twice; a changed calibration seed invalidates calib-set and everything
# after it, and aqs plan names the seed as the reason.
source "$(dirname "$0")/build_common.bash"

out=$("${B[@]}" build --json "${BUILD_ARGS[@]}" recipe fast50) || fail "first build"
expect_eq "$(stage_states "$out" fast50)" \
  "source=RUN calib-set=RUN calibrate=RUN sensitivity=RUN slice=RUN export=RUN" "first build states"
ckpt=$(echo "$out" | jq -r '.[0].out_dir')
[ -f "$ckpt/model.safetensors.index.json" ] && [ -f "$ckpt/hf_quant_config.json" ] || fail "checkpoint files in $ckpt"
expect_eq "$(stat -c %a "$ckpt/config.json")" "444" "checkpoint file mode"
pass "first build runs every stage and materializes $ckpt"

# The build stores shards straight from the exporter's memory; its checkout must be byte for
# byte what a plain `aqs export` of the same amax table and plan writes.
show=$("${B[@]}" show --json fast50) || fail "show"
"${B[@]}" cat "$(echo "$show" | jq -r .stages.calibrate)" >"$TMP/amax.json" || fail "cat amax"
"${B[@]}" cat "$(echo "$show" | jq -r .stages.slice)" >"$TMP/plan.json" || fail "cat plan"
"$AQS" export --model "$TMP/model" --amax "$TMP/amax.json" --plan "$TMP/plan.json" --out "$TMP/direct" \
  >/dev/null 2>&1 || fail "aqs export"
for f in "$TMP"/direct/*.safetensors "$TMP/direct/model.safetensors.index.json" "$TMP/direct/config.json" \
         "$TMP/direct/hf_quant_config.json"; do
  cmp -s "$f" "$ckpt/$(basename "$f")" || fail "checkout differs from aqs export in $(basename "$f")"
done
pass "checkout equals a direct aqs export, file for file"

md="$ckpt.per-layer-sensitivity.md"
[ -f "$md" ] && [ -f "$ckpt.sensitivity.json" ] || fail "per-layer sensitivity report beside $ckpt"
expect_eq "$(grep -c '^| [0-9]* |' "$md")" "4" "layer rows in the Markdown report (tiny: 4 layers)"
expect_eq "$(grep -o 'FP8\*\* |' "$md" | wc -l)" "8" "FP8 cells in the fast50 report (8 of 16 groups)"
expect_eq "$("${B[@]}" show --scores fast50 | jq '.ranking | length')" "16" "groups ranked in the scores manifest"
cmp -s <("${B[@]}" show --markdown fast50) "$md" || fail "aqs show --markdown differs from the written report"
pass "per-layer sensitivity report (Markdown + JSON) beside the checkout and from aqs show"

for mode in reflink hardlink copy; do
  "${B[@]}" checkout --link-mode "$mode" fast50 "$TMP/co/$mode/fast50" >/dev/null || fail "checkout --link-mode $mode"
  # (.aqs-checkout holds each directory's own file stamps, so it differs by design)
  diff -r -x .aqs-checkout "$ckpt" "$TMP/co/$mode/fast50" >/dev/null || fail "checkout ($mode) differs from the build's output"
done
[ "$(stat -c %h "$TMP/co/hardlink/fast50/model-layers-000.safetensors")" -ge 2 ] || fail "hardlink mode did not link"
rc=0; mkdir -p "$TMP/mine"; echo keep >"$TMP/mine/notes.txt"
"${B[@]}" checkout fast50 "$TMP/mine" >/dev/null 2>"$TMP/err" || rc=$?
expect_eq "$rc" "1" "checkout over a foreign directory"
expect_contains "$(cat "$TMP/err")" "is not an aqs checkout; refusing to replace it" "checkout refusal"
pass "checkout in every link mode into new nested directories; a foreign directory is refused"

puts_before=$(store_stat puts); stored_before=$(store_stat bytes_stored)

out=$("${B[@]}" build --json "${BUILD_ARGS[@]}" recipe fast50) || fail "second build"
expect_eq "$(stage_states "$out" fast50)" \
  "source=HIT calib-set=HIT calibrate=HIT sensitivity=HIT slice=HIT export=HIT" "second build states"
expect_eq "$(store_stat puts)" "$puts_before" "objects stored by a cached rebuild"
expect_eq "$(store_stat bytes_stored)" "$stored_before" "stored bytes after a cached rebuild"
pass "second build is all hits and stores nothing"

out=$("${B[@]}" build --json "${BUILD_ARGS[@]}" recipe fast60) || fail "fast60 build"
expect_eq "$(stage_states "$out" fast60)" \
  "source=HIT calib-set=HIT calibrate=HIT sensitivity=HIT slice=RUN export=RUN" "fast60 after fast50"
new_bytes=$(( $(store_stat bytes_stored) - stored_before ))
model_bytes=$(stat -c %s "$TMP/model/model.safetensors")
# Only the groups fast60 adds to FP8 are new tensors: far less than a second checkpoint.
[ "$new_bytes" -lt $(( model_bytes / 3 )) ] || fail "fast60 stored $new_bytes new bytes (model is $model_bytes)"
pass "fast60 after fast50 runs slice + export only and stores $new_bytes new bytes"

printf '[recipe]\nextends = fast50\n[calib]\nseed = 1\n' > "$TMP/recipes/fast50s.ini"
out=$("${B[@]}" plan --json "${BUILD_ARGS[@]}" recipe fast50s) || fail "plan"
expect_eq "$(stage_states "$out" fast50s)" \
  "source=HIT calib-set=MISS calibrate=MISS sensitivity=MISS slice=MISS export=MISS" "plan after seed change"
reason=$(echo "$out" | jq -r '.[0].stages[1].reason')
expect_contains "$reason" "params.seed 0 -> 1" "miss reason"
text=$("${B[@]}" plan "${BUILD_ARGS[@]}" recipe fast50s) || fail "plan text"
expect_contains "$text" "needs calib-set first" "plan text"
text=$("${B[@]}" plan "${BUILD_ARGS[@]}" recipe fast70) || fail "plan fast70"
expect_contains "$text" "params.coverage 0.6 -> 0.7" "slice miss reason (nearest cached: fast60)"
puts_plan=$(store_stat puts)
"${B[@]}" plan "${BUILD_ARGS[@]}" recipe fast70 >/dev/null || fail "plan again"
expect_eq "$(store_stat puts)" "$puts_plan" "objects stored by aqs plan"
out=$("${B[@]}" build --json "${BUILD_ARGS[@]}" recipe fast50s) || fail "seed build"
expect_eq "$(stage_states "$out" fast50s)" \
  "source=HIT calib-set=RUN calibrate=RUN sensitivity=RUN slice=RUN export=RUN" "build after seed change"
pass "a new seed invalidates calib-set and everything after it; plan names the seed"

"${B[@]}" verify >/dev/null || fail "verify after builds"
pass "store verifies"
