#!/bin/bash
# tests/integration/build_devices.sh: `aqs build --devices cpu,cpu` computes the calibration and
# sensitivity chunks in two worker processes (engine/stages/chunk_workers.h) and gets the same
# amax, scores and checkpoint digests as a one-process build; so does --rebuild with workers.
# Bad --devices lists and a bad worker assignment are clear errors. A killed worker fails the build
# (naming it) and ends the other worker; a killed build ends its workers; workers run the build's own
# program even once its file is deleted.
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

# Worker lifetimes, on a calibration long enough (the small model, 1000 captions) to catch its
# two workers running. alive PID: running (not a zombie).
alive() { local s; s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ]; }
# children_of PID: the pids whose parent is PID, from /proc/*/stat (no procps: the GPU machine has
# no pgrep, and this test found no workers there).
children_of() {
  local f line fields
  for f in /proc/[0-9]*/stat; do
    read -r line <"$f" 2>/dev/null || continue
    read -ra fields <<<"${line##*) }" # after "pid (comm) ": state, ppid, ...
    [ "${fields[1]:-}" = "$1" ] && { f=${f#/proc/}; echo "${f%/stat}"; }
  done
  return 0
}
# workers_of PID: "W0 W1", the pids of PID's chunk workers 0 and 1 once both run (nothing after 30 s).
workers_of() {
  local k w0= w1=
  for _ in $(seq 300); do
    for k in $(children_of "$1"); do
      if tr '\0' '\n' <"/proc/$k/environ" 2>/dev/null | grep -Eq '^AQS_CHUNK_WORKER=[a-z]+:sha256:[0-9a-f]+:0([-,]|$)'; then w0=$k; else w1=$k; fi
    done
    [ -n "$w0" ] && [ -n "$w1" ] && { echo "$w0 $w1"; return; }
    sleep 0.1
  done
}
# gone PID SECONDS: PID has ended within SECONDS.
gone() { for _ in $(seq $(($2 * 10))); do alive "$1" || return 0; sleep 0.1; done; return 1; }
"$AQS" synth-model --preset small --seed 3 --out "$TMP/small" >/dev/null || fail "synth-model small"
python3 -c "import random; random.seed(7); w='man woman dog cat bus child bird horse street field snow beach'.split()
print('\n'.join(' '.join(random.choice(w) for _ in range(random.randint(4, 14))) for _ in range(1000)))" \
  >"$TMP/long.txt"
LONG=(--model "$TMP/small" --captions "$TMP/long.txt" --recipes-dir "$TMP/recipes" --no-checkout --samples 1000)

# One worker killed: the build ends its other worker (here stopped: waiting for it would never
# end) and fails naming the killed one. Started by a caller that ignores SIGCHLD (inherited: the
# kernel would reap the workers unseen, and a killed one pass for a finished one).
"$AQS" --store "$TMP/kill" init >/dev/null || fail "init"
NOCHLD=(python3 -c 'import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])')
AQS_PROGRESS=never "${NOCHLD[@]}" "$AQS" --store "$TMP/kill" build "${TWO[@]}" "${LONG[@]}" recipe fast50 >/dev/null 2>"$TMP/kill.err" &
build=$!
read -r w0 w1 <<<"$(workers_of $build)"
[ -n "$w1" ] || fail "no two chunk workers under the build"
kill -STOP "$w0"
kill -KILL "$w1"
gone "$build" 30 || { kill -KILL "$w0" "$build"; fail "the build waited for its stopped worker 0 after worker 1 was killed"; }
rc=0
wait "$build" || rc=$?
expect_eq "$rc" 1 "exit status of a build whose worker was killed"
grep -q "calibrate: chunk worker 1 (.*) was killed by signal 9" "$TMP/kill.err" || fail "no killed worker in: $(cat "$TMP/kill.err")"
! alive "$w0" || { kill -KILL "$w0"; fail "worker 0 outlived the failed build"; }

# The build killed (SIGTERM, as by kill or a job scheduler): its workers end with it.
AQS_PROGRESS=never "$AQS" --store "$TMP/kill" build "${TWO[@]}" "${LONG[@]}" recipe fast50 >/dev/null 2>&1 &
build=$!
read -r w0 w1 <<<"$(workers_of $build)"
[ -n "$w1" ] || fail "no two chunk workers under the build"
kill -TERM "$build"
wait "$build" || true
for w in $w0 $w1; do gone "$w" 5 || { kill -KILL "$w0" "$w1"; fail "worker $w outlived its build (SIGTERM)"; }; done

# The aqs binary replaced while a build runs (a rebuild, an upgrade): the sensitivity workers, started
# after that, are the build's own program still.
cp "$AQS" "$TMP/aqs-old"
AQS_PROGRESS=never "$TMP/aqs-old" --store "$TMP/kill" build "${TWO[@]}" "${LONG[@]}" --samples 400 \
  recipe fast50 >/dev/null 2>"$TMP/replaced.err" &
build=$!
[ -n "$(workers_of $build)" ] || fail "no two chunk workers under the build"
rm "$TMP/aqs-old"
wait "$build" || fail "build whose binary was deleted: $(cat "$TMP/replaced.err")"
grep -q "^sensitivity: 2 chunks on 2 workers" "$TMP/replaced.err" || fail "no sensitivity workers: $(cat "$TMP/replaced.err")"
pass "${TWO[*]}: same amax, scores and checkpoint as one process; bad lists refused; workers end with a failed or killed build"
