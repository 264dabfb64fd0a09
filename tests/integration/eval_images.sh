#!/bin/bash
# tests/integration/eval_images.sh: `aqs eval` of all_layers schemes on image+caption rows (tiny
# synthetic model, vision group vis.0.gate_up planted as the outlier, the fixture images at their
# odd sizes): the eval set is the rows calibration did not use, KL grows with coverage and jumps
# only when the planted vision group is quantized (left for last), FP8 vision linears run as
# served (a vision-only scheme moves image eval but not caption eval), results are cached and
# shared with the build's eval stage.
source "$(dirname "$0")/vision_common.bash"
[ "$n" -ge 30 ] || fail "only $n rows"
sweep=(t10 t50 t90 t100)
for x in 10 50 90 100; do
  printf '[recipe]\nextends = all_layers_top%s\n[calib]\nsamples = 24\nmax_len = 256\n[sensitivity]\nscore_samples = 16\n' \
    "$x" >"$TMP/recipes/t$x.ini"
done
printf '[recipe]\nextends = t50\n[slice]\ncandidates = visual.*\n' >"$TMP/recipes/t50_vis.ini"
"$AQS" --store "$TMP/store" init >/dev/null || fail "init"
B=("$AQS" --store "$TMP/store")
ARGS=(--model "$TMP/model" --images "$TMP/data/rows.jsonl" --root "$TMP/data" --recipes-dir "$TMP/recipes" --quiet)
"${B[@]}" build --no-checkout "${ARGS[@]}" recipe "${sweep[@]}" t50_vis >/dev/null || fail "sweep build"

out=$("${B[@]}" eval --json "${ARGS[@]}" "${sweep[@]}" t50_vis bf16) || fail "eval"
expect_eq "$(jqr "$out" '[.[] | .eval_set] | unique | join(",")')" "image+caption" "eval set kind"
expect_eq "$(jqr "$out" '[.[] | .n_seqs] | unique | join(",")')" "$((n - 24))" "held-out image rows"
jqr "$out" '[.[0:4][] | .kl_mean]' | python3 -c '
import json, sys
kl = json.load(sys.stdin)
assert kl[0] > 0 and all(a < b for a, b in zip(kl, kl[1:])), kl
assert kl[3] > 5 * kl[2], kl  # the planted vision group, left for last, is in t100 only' \
  || fail "KL over t10..t100 on image rows: $(jqr "$out" '[.[] | .kl_mean]')"
expect_eq "$(jqr "$out" '.[5] | "\(.kl_mean) \(.top1) \(.ppl == .ref_ppl)"')" "0 1 true" "bf16 row"
pass "image rows held out; KL grows with coverage and jumps at the planted vision group"

# FP8 vision linears run as served: the vision-only scheme changes image eval, not caption eval
# (the language model is the source's, and text has no image to run the tower on).
expect_eq "$(jqr "$out" '.[4].kl_mean > 0')" "true" "vision-only scheme on image rows"
printf 'a caption with %s words in it\n' one two three four five six seven eight nine ten > "$TMP/caps.txt"
cap=$("${B[@]}" eval --json "${ARGS[@]}" --captions "$TMP/caps.txt" t50_vis) || fail "eval --captions"
expect_eq "$(jqr "$cap" '.[0] | "\(.eval_set) \(.kl_mean) \(.n_seqs)"')" "caption 0 10" "vision-only scheme on captions"
pass "a vision-only scheme moves image eval and leaves caption eval at KL 0"

again=$("${B[@]}" eval --json "${ARGS[@]}" "${sweep[@]}" t50_vis bf16) || fail "eval again"
expect_eq "$(jqr "$again" '[.[] | select(.cached | not)] | length')" "0" "rows computed by a second eval"
expect_eq "$(jqr "$again" '[.[] | .kl_mean]')" "$(jqr "$out" '[.[] | .kl_mean]')" "cached metrics"
table=$("${B[@]}" eval "${ARGS[@]}" t50 bf16) || fail "eval table"
expect_contains "$table" "$((n - 24)) held-out image+caption rows" "table footer"
expect_error 1 "pass --images FILE" "${B[@]}" eval --model "$TMP/model" --recipes-dir "$TMP/recipes" --quiet t50
pass "image eval cached; a missing image file is named"

# The build's eval stage of an image recipe uses the same held-out image rows and key.
printf '[recipe]\nextends = t50\n[slice]\ncoverage = 0.3\n[eval]\nsamples = 6\n' >"$TMP/recipes/t30e.ini"
b=$("${B[@]}" build --json --no-checkout "${ARGS[@]}" recipe t30e) || fail "build t30e"
expect_eq "$(jq -r '.[0].stages[-1] | "\(.stage) \(.state)"' <<<"$b")" "eval RUN" "eval stage of an image recipe"
e6=$("${B[@]}" eval --json "${ARGS[@]}" --samples 6 t30e) || fail "eval t30e"
expect_eq "$(jqr "$e6" '.[0] | "\(.cached) \(.eval_set) \(.n_seqs)"')" "true image+caption 6" "aqs eval finds the build's image eval"
pass "build [eval] on an image recipe shares aqs eval's action"

# Every held-out image unreadable: the eval set is an error naming the JSONL line and the image
# (exit 1, nothing on stdout), not an empty or text-only eval; one image row is enough to eval.
one=$("${B[@]}" eval --json "${ARGS[@]}" --samples 1 t50) || fail "eval of one image row"
expect_eq "$(jqr "$one" '.[0] | "\(.n_seqs) \(.eval_set) \(.kl_mean > 0)"')" "1 image+caption true" "1-row image eval"
rm "$TMP"/data/imgs/*
expect_error 1 "rows.jsonl:" "${B[@]}" eval --json "${ARGS[@]}" --samples 3 t50
expect_contains "$ERR_OUT" "cannot open image" "unreadable image rows"
pass "a 1-row image eval; unreadable image rows are named"
