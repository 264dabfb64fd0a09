#!/bin/bash
# tests/integration/build_cpu_kernels.sh: the CPU backend gives the same bits whatever kernel set
# OpenBLAS would pick for the CPU (kernels/cpu/blas.c fixes it), so a store shared by machines of
# different CPU kinds holds one answer per key. OPENBLAS_CORETYPE stands in for another machine:
# before blas.c, Haswell kernels gave other amax than Prescott kernels for these inputs.
source "$(dirname "$0")/build_common.bash"

# digests_as CORE: "calibrate=... sensitivity=... export=..." of fast50 built in a fresh store
# with OPENBLAS_CORETYPE=CORE ("" = unset).
digests_as() {
  local store="$TMP/store-${1:-unset}" out
  "$AQS" --store "$store" init >/dev/null || fail "init"
  out=$(OPENBLAS_CORETYPE=$1 AQS_PROGRESS=never "$AQS" --store "$store" build --json --no-checkout \
    "${BUILD_ARGS[@]}" recipe fast50 2>"$TMP/err") || fail "build with OPENBLAS_CORETYPE=$1: $(cat "$TMP/err")"
  echo "$out" | jq -r '.[0].stages[] | select(.stage == "calibrate" or .stage == "sensitivity" or .stage == "export")
                       | "\(.stage)=\(.result)"' | tr '\n' ' '
}
ref=$(digests_as "")
[[ "$ref" == calibrate=sha256:*sensitivity=sha256:*export=sha256:* ]] || fail "no digests in: $ref"
cores="Nehalem"
grep -q avx2 /proc/cpuinfo && cores="$cores Haswell"
grep -q avx512f /proc/cpuinfo && cores="$cores SkylakeX"
for core in $cores; do
  expect_eq "$(digests_as "$core")" "$ref" "digests with OPENBLAS_CORETYPE=$core vs unset"
done
pass "same bits with OpenBLAS told to use: unset $cores"
