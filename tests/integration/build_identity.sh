#!/usr/bin/env bash
# tests/integration/build_identity.sh: a build is (recipe, model, data) (issue 9): teammates with
# other captions or another model never move each other's builds; ls shows recipe, model, data,
# bits, when, who; a short name resolves by the workspace's model and data, or lists the
# candidates and how to pick one; diff first says when builds differ in model or data; checkout
# never deletes a file it did not write and refuses unusable targets; ref names are checked and
# refs under recipe/ only name build records; refs of the older layout stay readable.
source "$(dirname "$0")/build_common.bash"

head -n 120 "$TMP/captions.txt" >"$TMP/captions_b.txt"        # teammate B: other captions
"$AQS" synth-model --preset tiny --seed 4 --out "$TMP/model2" >/dev/null 2>&1 || fail "synth-model 2"
ARGS=(--recipes-dir "$TMP/recipes" --quiet)
"${B[@]}" build --json "${BUILD_ARGS[@]}" --out "$TMP/a50" recipe fast50 >"$TMP/a.json" || fail "A's build"
"${B[@]}" build --json --no-checkout --model "$TMP/model" --captions "$TMP/captions_b.txt" "${ARGS[@]}" \
  recipe fast50 >"$TMP/b.json" || fail "B's build (other captions)"
"${B[@]}" build --json --no-checkout --model "$TMP/model2" --captions "$TMP/captions.txt" "${ARGS[@]}" \
  recipe fast50 >"$TMP/c.json" || fail "C's build (other model)"
rec() { jq -r '.[0].build_record' "$1"; }
stage() { jq -r --arg s "$2" '.[0].stages[] | select(.stage == $s) | .result' "$1"; }
ma=$(stage "$TMP/a.json" source); da=$(stage "$TMP/a.json" calib-set)
db=$(stage "$TMP/b.json" calib-set); mc=$(stage "$TMP/c.json" source)
[ "$da" != "$db" ] && [ "$ma" != "$mc" ] || fail "the three builds should differ in data / model"

# Three builds, three refs: B and C did not move A's.
refs=$("${B[@]}" refs --json | jq -r '[.[] | select(.name | startswith("recipe/fast50/"))] | length')
expect_eq "$refs" "3" "refs of fast50 builds"
expect_eq "$("${B[@]}" refs --json | jq -r --arg n "recipe/fast50/${ma:7:16}-${da:7:16}" '.[] | select(.name == $n) | .target')" \
  "$(rec "$TMP/a.json")" "A's ref still names A's build"

# ls: one row per build, with model and data prefixes, when and who.
ls_out=$("${B[@]}" ls)
expect_eq "$(head -1 <<<"$ls_out" | tr -s ' ')" "RECIPE FP8 BITS MODEL DATA BUILT BY" "ls header"
expect_eq "$(grep -c '^fast50 ' <<<"$ls_out")" "3" "ls rows of fast50"
grep -q "^fast50 .* ${ma:7:12} ${da:7:12} 20[0-9-]*T[0-9:]*Z $(id -un)\$" <<<"$ls_out" || fail "A's row: $ls_out"
grep -q "^fast50 .* ${mc:7:12} ${da:7:12} " <<<"$ls_out" || fail "C's row: $ls_out"
lsj=$("${B[@]}" ls --json)
expect_eq "$(jq -r --arg m "$ma" --arg d "$db" '.[] | select(.model == $m and .data == $d) | .user' <<<"$lsj")" \
  "$(id -un)" "ls --json user"
pass "three builds of one recipe keep three refs; ls shows model, data, when, who"

# ls in natural order (fast10, fast20, fast50 ..., fast100); show prints every recipe parameter,
# scores in one scientific format and bits with 4 decimals.
"${B[@]}" build --no-checkout "${BUILD_ARGS[@]}" recipe fast100 fast20 fast10 >"$TMP/fam.out" || fail "family"
expect_eq "$(grep -c '^family check passed: the 3 checkpoints differ pairwise exactly as their plans (3 pairs)$' "$TMP/fam.out")" \
  "1" "one line for a passing family check"
expect_eq "$("${B[@]}" ls | awk 'NR > 1 {print $1}' | uniq | tr '\n' ' ')" "fast10 fast20 fast50 fast100 " "ls natural order"
show=$("${B[@]}" show fast20)
for p in "calib_samples      32" "max_len            64" "chunk_sequences    8" "score_samples      16" \
         "coverage           0.2" "method             gradient" "scope              lm_only" "order              least_sensitive_first"; do
  expect_contains "$show" "  $p" "show parameter $p"
done
grep -qE '^effective bits  [0-9]+\.[0-9]{4}$' <<<"$show" || fail "bits format: $show"
scores=$(awk '/^group +format +score$/ {on=1; next} on {print $3}' <<<"$show")
[ -n "$scores" ] || fail "no score lines: $show"
bad=$(grep -cvE '^[0-9]\.[0-9]{3}e[-+][0-9]{2}$' <<<"$scores" || true)
expect_eq "$bad" "0" "scores in one scientific format"
pass "ls natural order; show prints the parameters and numbers in one format"

# A short name with several builds: the candidates and how to pick, no guess.
expect_error 1 "'fast50' names 3 builds (different models or data); pick one:" "${B[@]}" show fast50
expect_contains "$ERR_OUT" "fast50@${mc:7:12}" "candidate C listed"
expect_contains "$ERR_OUT" "fast50@${ma:7:12}+${da:7:12}" "candidate A listed with its data"
expect_contains "$ERR_OUT" "[data] captions in .aqstore, or pass --model and --captions" "how to pick"
# The workspace's model and data pick one (flags, then .aqstore).
expect_eq "$("${B[@]}" show --json --model "$TMP/model" --captions "$TMP/captions.txt" fast50 | jq -r .build_record)" \
  "$(rec "$TMP/a.json")" "--model/--captions pick A's build"
expect_eq "$("${B[@]}" show --json --model "$TMP/model2" fast50 | jq -r .build_record)" "$(rec "$TMP/c.json")" \
  "--model picks C's build"
mkdir -p "$TMP/ws" && printf '[store]\npath = %s\n[model]\npath = %s\n[data]\ncaptions = %s\n' \
  "$TMP/store" "$TMP/model" "$TMP/captions_b.txt" >"$TMP/ws/.aqstore"
expect_eq "$(cd "$TMP/ws" && "$AQS" show --json fast50 | jq -r .build_record)" "$(rec "$TMP/b.json")" \
  ".aqstore's model and captions pick B's build"
# NAME@MODEL[+DATA] picks explicitly; a selector that matches nothing says so.
expect_eq "$("${B[@]}" show --json "fast50@${mc:7:8}" | jq -r .build_record)" "$(rec "$TMP/c.json")" "fast50@<model>"
expect_eq "$("${B[@]}" show --json "fast50@${ma:7:8}+${db:7:6}" | jq -r .build_record)" "$(rec "$TMP/b.json")" \
  "fast50@<model>+<data>"
expect_error 1 "no build of fast50 matches '@0000'" "${B[@]}" show fast50@0000
pass "short names resolve by the workspace's model and data, or list the candidates"

# diff across models says so first (stdout and the failure message).
rc=0; "${B[@]}" diff --quiet "fast50@${ma:7:8}+${da:7:8}" "fast50@${mc:7:8}" >"$TMP/d.out" 2>"$TMP/d.err" || rc=$?
expect_eq "$rc" "1" "diff across models fails the proof"
expect_eq "$(head -1 "$TMP/d.out")" \
  "note: fast50@${ma:7:8}+${da:7:8} and fast50@${mc:7:8} differ in model ${ma:7:12} vs ${mc:7:12}, sensitivity run $(stage "$TMP/a.json" sensitivity | cut -c8-19) vs $(stage "$TMP/c.json" sensitivity | cut -c8-19): more than their plans may differ" \
  "diff's first line"
expect_contains "$(cat "$TMP/d.err")" "differ in model" "diff's error names the model difference"
grep -q "$TMP/store/tmp" "$TMP/d.out" "$TMP/d.err" && fail "diff prints temporary paths"
expect_contains "$(sed -n 3p "$TMP/d.out")" "A: fast50@${ma:7:8}+${da:7:8} (" "diff names A as typed"
pass "diff states a model / data difference first and speaks of the names typed"

# checkout: never deletes a file it did not write; unusable targets are refused.
sel="fast50@${ma:7:8}+${da:7:8}"
"${B[@]}" checkout "$sel" "$TMP/co" >/dev/null || fail "checkout"
echo "my notes" >"$TMP/co/NOTES.md"
expect_error 1 "$TMP/co/NOTES.md was not written by aqs checkout; refusing to replace $TMP/co" \
  "${B[@]}" checkout "fast50@${mc:7:8}" "$TMP/co"
expect_eq "$(cat "$TMP/co/NOTES.md")" "my notes" "the user's file survives"
rm "$TMP/co/NOTES.md"
"${B[@]}" checkout "fast50@${mc:7:8}" "$TMP/co/" >/dev/null || fail "checkout over an earlier checkout (trailing /)"
[ ! -e "$TMP/co/.aqs-tmp"* ] || fail "temporary directory left inside the target"
expect_error 1 "empty checkout directory" "${B[@]}" checkout "$sel" ""
for bad in . .. / "$TMP/co/.."; do
  expect_error 1 "cannot be a checkout directory" "${B[@]}" checkout "$sel" "$bad"
done
pass "checkout keeps files it did not write and refuses unusable targets"

# Ref names: segments of [A-Za-z0-9._-] separated by single '/'; recipe/ only for build records.
for bad in ../../etc/x /abs a//b .. a/./b 'x@y' 'a:b' 'sp ace' ''; do
  expect_error 1 "bad ref name" "${B[@]}" refs set "$bad" "$(rec "$TMP/a.json")"
done
"${B[@]}" refs set team/v1.0_rc-1 "$(rec "$TMP/a.json")" >/dev/null || fail "a good ref name"
ckpt=$(stage "$TMP/a.json" export)
expect_error 1 "refs under recipe/ name builds, and $ckpt is not a build record" "${B[@]}" refs set recipe/x "$ckpt"
expect_eq "$("${B[@]}" ls | grep -c '^fast50 ')" "3" "ls unchanged by the refused ref"
pass "ref names are checked; refs under recipe/ only name build records"

# A store of the older layout (refs recipe/<name>) stays readable.
"${B[@]}" refs set recipe/fast50 "$(rec "$TMP/b.json")" >/dev/null
for r in "recipe/fast50/${ma:7:16}-${da:7:16}" "recipe/fast50/${ma:7:16}-${db:7:16}" "recipe/fast50/${mc:7:16}-${da:7:16}"; do
  "${B[@]}" refs delete "$r" >/dev/null || fail "delete $r"
done
expect_eq "$("${B[@]}" show --json fast50 | jq -r '.build_record + " " + .ref')" "$(rec "$TMP/b.json") recipe/fast50" \
  "an old-layout ref resolves"
expect_eq "$("${B[@]}" ls --json | jq -r '.[] | select(.recipe == "fast50") | .ref')" "recipe/fast50" "ls lists an old-layout ref"
pass "refs of the older layout stay readable"
