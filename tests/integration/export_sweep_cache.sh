#!/bin/bash
# tests/integration/export_sweep_cache.sh: a sweep built in one process reuses FP8 codes across its
# exports (engine/export/fp8_cache.h) and stores several shards at once, and neither changes a
# byte: fast90, exported after fast10 in one build (8 shards in flight), reuses fast10's FP8 codes
# and has the checkpoint digest it gets when built alone in a fresh store (2 shards in flight),
# where it reuses none.
source "$(dirname "$0")/build_common.bash"
export AQS_EXPORT_TIMING=1
sweep=(fast10 fast90)

# ckpt_of JSON RECIPE: the checkpoint digest (the export stage's result) of RECIPE in a build --json report.
ckpt_of() { echo "$1" | jq -r --arg r "$2" '.[] | select(.recipe == $r) | .stages[] | select(.stage == "export") | .result'; }

out=$(AQS_EXPORT_SLOTS=8 "${B[@]}" build --json --no-checkout "${BUILD_ARGS[@]}" recipe "${sweep[@]}" 2>"$TMP/sweep.err") \
  || fail "sweep: $(cat "$TMP/sweep.err")"
grep -q "^export fast10: .* 0 reused" "$TMP/sweep.err" || fail "first export reused codes: $(cat "$TMP/sweep.err")"
r=fast90
reused=$(sed -n "s/^export $r: .*FP8 params [0-9]*, \([0-9]*\) reused/\1/p" "$TMP/sweep.err")
[ -n "$reused" ] && [ "$reused" -gt 0 ] || fail "$r reused no FP8 codes: $(cat "$TMP/sweep.err")"
want=$(ckpt_of "$out" "$r")
[[ "$want" == sha256:* ]] || fail "no checkpoint digest for $r in: $out"
"$AQS" --store "$TMP/alone" init >/dev/null || fail "init"
alone=$(AQS_EXPORT_SLOTS=2 "$AQS" --store "$TMP/alone" build --json --no-checkout "${BUILD_ARGS[@]}" recipe "$r" \
  2>"$TMP/alone.err") || fail "$r alone: $(cat "$TMP/alone.err")"
grep -q "^export $r: .* 0 reused" "$TMP/alone.err" || fail "$r alone reused codes: $(cat "$TMP/alone.err")"
expect_eq "$(ckpt_of "$alone" "$r")" "$want" "checkpoint of $r alone vs in the sweep"
pass "sweep exports reuse FP8 codes; checkpoints identical to single builds"
