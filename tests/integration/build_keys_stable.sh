#!/bin/bash
# tests/integration/build_keys_stable.sh: cache keys do not change across releases. The store in
# tests/fixtures/store_v1 was built by the aqs of commit cd7305e (before the stage table; see its
# make.sh): every stage of every fixture recipe must still be a HIT with the same action key and
# result, the chunk actions must be found again (a recipe with more samples reuses the cached
# chunks and computes only the new ones), and nothing is stored by the all-hit build.
source "$(dirname "$0")/cli_common.bash"
FIX="$AQS_SOURCE_DIR/tests/fixtures/store_v1"
tar -C "$TMP" --zstd -xf "$FIX/store.tar.zst" || fail "unpack the fixture store"
"$AQS" synth-model --preset tiny --seed 3 --outliers lm.1.down:100000,lm.2.qkv:100000 --out "$TMP/model" \
  >/dev/null 2>&1 || fail "synth-model"
B=("$AQS" --store "$TMP/store")
ARGS=(--model "$TMP/model" --captions "$FIX/captions.txt" --recipes-dir "$FIX/recipes" --quiet)
stat_of() { "${B[@]}" stats --json | jq -r --arg s "$1" --arg f "$2" '.stages[] | select(.stage == $s) | .[$f]'; }
puts0=$("${B[@]}" stats --json | jq .puts)

: >"$TMP/keys"
# One build of all five: k_mlp calibrates on other samples, so the family check compares it with
# none of the others (recipes on different calibrations differ everywhere by design).
names="k_cov50 k_kl k_bits k_rand k_mlp"
# shellcheck disable=SC2086
plan=$("${B[@]}" plan --json "${ARGS[@]}" recipe $names) || fail "plan $names"
expect_eq "$(jq '[.[].stages[] | select(.state != "HIT")] | length' <<<"$plan")" "0" "plan misses"
# shellcheck disable=SC2086
out=$("${B[@]}" build --json --no-checkout "${ARGS[@]}" recipe $names) || fail "build $names"
expect_eq "$(jq '[.[].stages[] | select(.state != "HIT")] | length' <<<"$out")" "0" "build misses"
jq -r '.[] | .recipe as $r | .stages[] | "\($r) \(.stage) \(.key) \(.result)"' <<<"$out" >>"$TMP/keys"
diff -u "$FIX/keys.golden" "$TMP/keys" || fail "action keys or results differ from the fixture's"
expect_eq "$("${B[@]}" stats --json | jq .puts)" "$puts0" "objects stored by an all-hit build"
pass "a store built by the previous release is all HITs: same keys, same results, nothing stored"

# More samples: a calib set of 32 whose first 3 chunks are the fixture's (calibrate finds 3 of its
# 4 chunk actions), and more score samples over the fixture's calib set (sensitivity finds 2 of
# its 3): the chunk keys did not change either.
printf '[recipe]\nextends = k_cov50\n[calib]\nsamples = 32\n' >"$TMP/more_cal.ini"
printf '[recipe]\nextends = k_cov50\n[sensitivity]\nscore_samples = 24\n' >"$TMP/more_sens.ini"
cp "$FIX"/recipes/*.ini "$TMP/"
RB=("${B[@]}" build --json --no-checkout "${ARGS[@]}" --recipes-dir "$TMP")
c0=$(stat_of calibrate-chunk hits)
out=$("${RB[@]}" recipe more_cal) || fail "build more_cal"
expect_eq "$(jq -r '[.[0].stages[] | .state] | join(" ")' <<<"$out")" "HIT RUN RUN RUN RUN RUN" "more_cal: stage states"
expect_eq "$(( $(stat_of calibrate-chunk hits) - c0 ))" "3" "calibrate chunk actions reused"
s0=$(stat_of sensitivity-chunk hits)
out=$("${RB[@]}" recipe more_sens) || fail "build more_sens"
expect_eq "$(jq -r '[.[0].stages[] | .state] | join(" ")' <<<"$out")" "HIT HIT HIT RUN RUN RUN" "more_sens: stage states"
expect_eq "$(( $(stat_of sensitivity-chunk hits) - s0 ))" "2" "sensitivity chunk actions reused"
pass "chunk actions of the previous release are reused"
