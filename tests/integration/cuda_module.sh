#!/bin/bash
# tests/integration/cuda_module.sh: commands that do not compute stay small because the CUDA
# backend is a separate module loaded only by --backend cuda: `aqs --version` and `aqs --help`
# under 20 MB resident (skipped under the sanitizers, whose shadow memory dwarfs that), the aqs
# binary itself links no CUDA library, and every way the module can be missing or broken gives
# an error that names the file and says what to do.
set -u
AQS=${AQS_BIN:?AQS_BIN not set}
[ -x "$AQS" ] || { echo "skipping: $AQS missing"; exit 77; }
AQS=$(realpath "$AQS")
T=$(mktemp -d "${TMPDIR:-/tmp}/aqs-cuda-module-XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_fail() { # expect_fail "message substring" cmd...
  local want=$1; shift
  local out
  out=$("$@" 2>&1) && fail "expected failure: $*"
  grep -qF -- "$want" <<<"$out" || fail "expected '$want' in: $out"
}

# Peak resident set of a command in KiB (GNU time, else Python's rusage of a child).
max_rss_kib() {
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%M' -o "$T/rss" "$@" >/dev/null 2>&1 || fail "$* failed"
    tail -1 "$T/rss"
  else
    python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@" || fail "$* failed"
  fi
}

libs=$(ldd "$AQS")
if grep -qE 'libcudart|libcublas' <<<"$libs"; then fail "aqs links CUDA libraries: $(grep -E 'cuda|cublas' <<<"$libs")"; fi
if grep -qE 'libasan|libubsan' <<<"$libs"; then
  echo "sanitizer build: resident-size limits not checked"
else
  for cmd in --version --help; do
    kib=$(max_rss_kib "$AQS" $cmd)
    echo "aqs $cmd: max RSS $kib KiB"
    [ "$kib" -lt 20480 ] || fail "aqs $cmd used $kib KiB resident (limit 20 MiB)"
  done
fi

# The module, when asked for, must be found, loadable and an aqs module; each failure says so.
"$AQS" synth-model --preset tiny --seed 2 --out "$T/model" >/dev/null || fail "synth-model"
printf '[1, 2, 3, 4, 5]\n' >"$T/tokens.jsonl"
calib=("$AQS" calibrate --model "$T/model" --tokens "$T/tokens.jsonl" --out "$T/amax.json" --backend cuda)
AQS_CUDA_MODULE="$T/none/libaqs_cuda.so" expect_fail "looked for $T/none/libaqs_cuda.so" "${calib[@]}"
echo "not a library" >"$T/bad.so"
AQS_CUDA_MODULE="$T/bad.so" expect_fail "cannot load $T/bad.so" "${calib[@]}"
AQS_CUDA_MODULE="$T/bad.so" expect_fail "use --backend cpu" "${calib[@]}"
zstd_so=$(awk '/libzstd/ {print $3; exit}' <<<"$libs")
if [ -n "$zstd_so" ]; then
  AQS_CUDA_MODULE="$zstd_so" expect_fail "is not an aqs CUDA module" "${calib[@]}"
fi
# An aqs copied away from its module names where it looked (a build without CUDA says so).
cp "$AQS" "$T/aqs"
want="built without CUDA"
[ -e "$(dirname "$AQS")/libaqs_cuda.so" ] && want="looked for $T/libaqs_cuda.so"
expect_fail "$want" "$T/aqs" calibrate --model "$T/model" --tokens "$T/tokens.jsonl" \
  --out "$T/amax.json" --backend cuda
[ ! -e "$T/amax.json" ] || fail "a failed calibrate left $T/amax.json behind"
echo "ok: cuda module loading and footprint"
