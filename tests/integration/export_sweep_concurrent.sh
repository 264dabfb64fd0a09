#!/bin/bash
# tests/integration/export_sweep_concurrent.sh: a sweep's later exports run at once (build_pool.h,
# AQS_EXPORT_SCHEMES threads, sharing one FP8 code cache whose claims make each weight quantized
# once) and that changes no byte: every recipe of fast10..fast100 built with 4 exports at once has
# the checkpoint digest of the same sweep built one export after another (three runs, each in a
# fresh copy of a store holding the calibration and fast10).
source "$(dirname "$0")/build_common.bash"
sweep=(fast10 fast20 fast30 fast40 fast50 fast60 fast70 fast80 fast90 fast100)
# The small preset: its weights take long enough to quantize and hash that exports meet on them.
"$AQS" synth-model --preset small --seed 3 --out "$TMP/small" >/dev/null || fail "synth-model small"
ARGS=(--model "$TMP/small" --captions "$TMP/captions.txt" --recipes-dir "$TMP/recipes" --no-checkout)

# ckpts JSON: "recipe digest" per line, the export stage's result of each recipe of a build --json report.
ckpts() { echo "$1" | jq -r '.[] | .recipe as $r | .stages[] | select(.stage == "export") | "\($r) \(.result)"'; }

# The calibration and fast10 first, in a store the other stores start from: a sweep's later
# exports then all start at once on an empty FP8 code cache, claiming the same weights.
"${B[@]}" build --quiet "${ARGS[@]}" recipe fast10 >/dev/null 2>"$TMP/first.err" || fail "fast10: $(cat "$TMP/first.err")"
cp -a "$TMP/store" "$TMP/base"
one=$(AQS_EXPORT_SCHEMES=1 "${B[@]}" build --json --quiet "${ARGS[@]}" recipe "${sweep[@]}" \
  2>"$TMP/one.err") || fail "sequential sweep: $(cat "$TMP/one.err")"
expect_eq "$(ckpts "$one" | wc -l)" 10 "checkpoints of the sequential sweep"
# Three times, in fresh copies: a race shows as a wrong digest or a failed store.
for run in 1 2 3; do
  rm -rf "$TMP/many" && cp -a "$TMP/base" "$TMP/many"
  # Not --quiet: the pool's own progress line (the final summary on a non-terminal) shows it ran.
  many=$(AQS_PROGRESS=auto AQS_EXPORT_SCHEMES=4 AQS_EXPORT_SLOTS=2 "$AQS" --store "$TMP/many" build --json "${ARGS[@]}" \
    recipe "${sweep[@]}" 2>"$TMP/many.err") || fail "concurrent sweep $run: $(cat "$TMP/many.err")"
  grep -q "^export .*9/9 schemes" "$TMP/many.err" || fail "the later exports did not run in the pool: $(cat "$TMP/many.err")"
  expect_eq "$(ckpts "$many")" "$(ckpts "$one")" "checkpoint digests (run $run), 4 exports at once vs one after another"
done
B=("$AQS" --store "$TMP/many")
# Every build is recorded, and a warm rebuild hits every export.
expect_eq "$("${B[@]}" ls --json | jq 'length')" 10 "builds recorded"
warm=$(AQS_EXPORT_SCHEMES=4 "${B[@]}" build --json --quiet "${ARGS[@]}" recipe "${sweep[@]}") || fail "warm sweep"
expect_eq "$(echo "$warm" | jq '[.[] | .stages[] | select(.stage == "export" and .state != "HIT")] | length')" 0 \
  "exports computed again in a warm sweep"
"${B[@]}" verify >/dev/null || fail "verify after the concurrent sweep"
pass "a sweep with 4 exports at once has the checkpoint digests of one export after another"
