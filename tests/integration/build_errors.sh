#!/bin/bash
# tests/integration/build_errors.sh: what a user gets wrong with build / plan / show / checkout /
# diff, each refused with a message that names the recipe, file, line or option at fault.
source "$(dirname "$0")/build_common.bash"

# expect_fail RC NEEDLE CMD...: CMD must exit RC and say NEEDLE on stderr.
expect_fail() {
  local want="$1" needle="$2"; shift 2
  local rc=0
  "$@" >/dev/null 2>"$TMP/err" || rc=$?
  expect_eq "$rc" "$want" "exit status of: $*"
  expect_contains "$(cat "$TMP/err")" "$needle" "message of: $*"
}

expect_fail 1 "no recipe 'top55'" "${B[@]}" build "${BUILD_ARGS[@]}" recipe top55
expect_fail 2 "name at least one recipe" "${B[@]}" build "${BUILD_ARGS[@]}" recipe
expect_fail 2 "bad --backend 'tpu'" "${B[@]}" build "${BUILD_ARGS[@]}" --backend tpu recipe fast50
expect_fail 2 "--out needs exactly one recipe" "${B[@]}" build "${BUILD_ARGS[@]}" --out "$TMP/o" recipe fast10 fast20
expect_fail 1 "calibrates on captions: pass --captions FILE" "${B[@]}" build --model "$TMP/model" \
  --recipes-dir "$TMP/recipes" recipe fast50
expect_fail 1 "no model: pass --model DIR" "${B[@]}" build --captions "$TMP/captions.txt" recipe top50
expect_fail 1 "config.json" "${B[@]}" build --model "$TMP/recipes" --captions "$TMP/captions.txt" recipe top50
printf '[recipe]\nextends = fast\n[slice]\ncoverage = 2\n' >"$TMP/recipes/bad.ini"
expect_fail 1 "$TMP/recipes/bad.ini:4: bad value '2' for [slice] coverage" "${B[@]}" plan "${BUILD_ARGS[@]}" recipe bad
printf '[recipe]\nextends = fast\n[sensitivity]\nscope = all_layers\n' >"$TMP/recipes/vis.ini"
expect_fail 1 "scope all_layers scores the vision tower: it needs an image+text calib set" "${B[@]}" build --no-checkout "${BUILD_ARGS[@]}" recipe vis
expect_fail 1 "no build or recipe named 'fast70'" "${B[@]}" show fast70
expect_fail 1 "no build or recipe named 'fast70'" "${B[@]}" diff fast70 fast80
expect_fail 2 "expected NAME and DIR" "${B[@]}" checkout fast70
expect_fail 2 "bad --link-mode 'symlink'" "${B[@]}" checkout --link-mode symlink fast70 "$TMP/x"
pass "build, plan, show, diff and checkout refuse bad input with precise messages"

# A workspace recipe set to an unreachable budget fails at slice, naming the reachable minimum.
printf '[recipe]\nextends = fast\n[slice]\neffective_bits = 8\n' >"$TMP/recipes/eb8.ini"
expect_fail 1 "effective bits 8 is out of reach" "${B[@]}" build --no-checkout "${BUILD_ARGS[@]}" recipe eb8
printf '[recipe]\nextends = fast\n[slice]\neffective_bits = 12\n' >"$TMP/recipes/eb12.ini"
bits=$("${B[@]}" build --json --no-checkout "${BUILD_ARGS[@]}" recipe eb12 | jq '.[0].summary.effective_bits')
python3 -c "import sys; sys.exit(0 if 8 < $bits <= 12 else 1)" || fail "eb12 built $bits effective bits"
pass "budgets: an unreachable one is refused, eb12 lands at $bits bits"
