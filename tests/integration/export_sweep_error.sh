#!/bin/bash
# tests/integration/export_sweep_error.sh: one export failing in the middle of a sweep whose later
# exports run at once (AQS_TEST_FAIL_EXPORT makes fast50's second layer shard fail to store): the
# build exits non-zero naming the recipe and the error, records the recipes before it and no
# other, leaves nothing half-written (no staging directory, no build of fast50, a sound store),
# and the same sweep without the fault then completes.
source "$(dirname "$0")/build_common.bash"
sweep=(fast10 fast20 fast30 fast40 fast50 fast60 fast70 fast80 fast90 fast100)
ARGS=(--model "$TMP/model" --captions "$TMP/captions.txt" --recipes-dir "$TMP/recipes" --no-checkout --quiet)

AQS_TEST_FAIL_EXPORT=fast50 AQS_EXPORT_SCHEMES=4 expect_error 1 \
  "aqs build: recipe fast50: test hook: cannot store model-layers-001.safetensors" \
  "${B[@]}" build "${ARGS[@]}" recipe "${sweep[@]}"
[ "$(echo "$ERR_OUT" | grep -c "recipe fast")" -eq 1 ] || fail "more than one recipe's error: $ERR_OUT"
# Recipes before fast50 are built and recorded; fast50 and every later one are not.
built=$("${B[@]}" ls --json | jq -r '[.[].recipe] | sort | join(" ")')
expect_eq "$built" "fast10 fast20 fast30 fast40" "builds recorded"
expect_error 1 "no build or recipe named 'fast50'" "${B[@]}" show fast50
# Nothing half-written: no staging directory or temporary file left in the store, every object sound.
left=$(find "$TMP/store/tmp" -mindepth 1 2>/dev/null | head -5)
[ -z "$left" ] || fail "left in the store's tmp/: $left"
"${B[@]}" verify >/dev/null || fail "verify after the failed sweep"
# The same sweep without the fault: every recipe built, fast50 included.
"${B[@]}" build "${ARGS[@]}" recipe "${sweep[@]}" >/dev/null 2>"$TMP/again.err" || fail "sweep again: $(cat "$TMP/again.err")"
expect_eq "$("${B[@]}" ls --json | jq 'length')" 10 "builds after the sweep again"
pass "a failing export in a concurrent sweep names its recipe, records the ones before it and leaves nothing half-written"
