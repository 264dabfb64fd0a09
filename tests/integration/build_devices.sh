#!/bin/bash
# tests/integration/build_devices.sh: `aqs build --devices cpu,cpu` computes the calibration and
# sensitivity chunks in two worker processes (engine/stages/chunk_workers.h) and gets the same
# amax, scores and checkpoint digests as a one-process build; so does --rebuild with workers.
# Bad --devices lists and a bad worker assignment are clear errors.
# AQS_DEVICES_BACKEND=cuda (GPU machine): `--devices 0,0` (two workers on GPU 0) against
# `--devices 0`, on the CUDA backend.
source "$(dirname "$0")/build_common.bash"
if [ "${AQS_DEVICES_BACKEND:-cpu}" = cuda ]; then
  ONE=(--backend cuda --devices 0); TWO=(--backend cuda --devices 0,0)
else
  ONE=(); TWO=(--devices cpu,cpu)
fi

# digests_of JSON: "calibrate=... sensitivity=... export=..." of the one recipe in a build --json report.
digests_of() {
  echo "$1" | jq -r '.[0].stages[] | select(.stage == "calibrate" or .stage == "sensitivity" or .stage == "export")
                     | "\(.stage)=\(.result)"' | tr '\n' ' '
}
ARGS=(--model "$TMP/model" --captions "$TMP/captions.txt" --recipes-dir "$TMP/recipes" --no-checkout --json)

one=$("${B[@]}" build --quiet "${ONE[@]}" "${ARGS[@]}" recipe fast50 2>"$TMP/one.err") || fail "one worker: $(cat "$TMP/one.err")"
"$AQS" --store "$TMP/two" init >/dev/null || fail "init"
two=$(AQS_PROGRESS=never "$AQS" --store "$TMP/two" build "${TWO[@]}" "${ARGS[@]}" recipe fast50 \
  2>"$TMP/two.err") || fail "two workers: $(cat "$TMP/two.err")"
grep -q "^calibrate: 4 chunks on 2 workers" "$TMP/two.err" || fail "calibrate did not use 2 workers: $(cat "$TMP/two.err")"
grep -q "^sensitivity: 2 chunks on 2 workers" "$TMP/two.err" || fail "sensitivity did not use 2 workers: $(cat "$TMP/two.err")"
# The workers computed every chunk (their lookups missed) and the build then found them all.
counts=$("$AQS" --store "$TMP/two" stats --json | jq -c '[.stages[] | select(.stage | endswith("-chunk"))
                                                         | "\(.stage) \(.hits)/\(.misses)"]')
expect_eq "$counts" '["calibrate-chunk 4/4","sensitivity-chunk 2/2"]' "chunk hits/misses of the build and its workers"
[[ "$(digests_of "$one")" == calibrate=sha256:*sensitivity=sha256:*export=sha256:* ]] || fail "no digests in: $one"
expect_eq "$(digests_of "$two")" "$(digests_of "$one")" "${TWO[*]} vs one process"

again=$(AQS_PROGRESS=never "$AQS" --store "$TMP/two" build "${TWO[@]}" --rebuild calibrate,sensitivity \
  "${ARGS[@]}" recipe fast50 2>"$TMP/again.err") || fail "rebuild with workers: $(cat "$TMP/again.err")"
grep -q "^calibrate: 4 chunks on 2 workers" "$TMP/again.err" || fail "rebuild did not use workers: $(cat "$TMP/again.err")"
expect_eq "$(digests_of "$again")" "$(digests_of "$one")" "--rebuild with ${TWO[*]} vs one process"

expect_error 2 "mixes 'cpu' and GPU indices" "${B[@]}" build --devices cpu,0 "${ARGS[@]}" recipe fast50
expect_error 2 "names GPUs: add --backend cuda" "${B[@]}" build --devices 0,1 "${ARGS[@]}" recipe fast50
expect_error 2 "bad entry 'x'" "${B[@]}" build --devices 0,x --backend cuda "${ARGS[@]}" recipe fast50
expect_error 1 "expected STAGE:sha256:HEX" env AQS_CHUNK_WORKER=calibrate:1 "${B[@]}" build "${ARGS[@]}" recipe fast50
zero=sha256:$(printf '0%.0s' $(seq 64))
# (every stage of that build is recorded, none is the target: the worker says so)
expect_error 1 "never reached its calibrate stage" env AQS_CHUNK_WORKER="calibrate:$zero:0" \
  "${B[@]}" build "${ONE[@]}" "${ARGS[@]}" recipe fast50
pass "${TWO[*]}: same amax, scores and checkpoint as one process; bad lists refused"
