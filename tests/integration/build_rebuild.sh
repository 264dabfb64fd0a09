#!/bin/bash
# tests/integration/build_rebuild.sh: aqs build --rebuild STAGE|all computes the named stages again
# instead of reusing their cached actions (a plan says so), reproduces the same bits, and refuses
# a name that is no stage; [export] kv_cache = fp8 keeps the K/V amax and writes FP8 KV scales
# under keys of its own.
source "$(dirname "$0")/build_common.bash"
states() { jq -r '[.[0].stages[] | .state] | join(" ")' <<<"$1"; }
results() { jq -r '[.[0].stages[] | .result] | join(" ")' <<<"$1"; }

first=$("${B[@]}" build --json --no-checkout "${BUILD_ARGS[@]}" recipe fast50) || fail "first build"
expect_eq "$(states "$first")" "RUN RUN RUN RUN RUN RUN" "first build"

out=$("${B[@]}" build --json --no-checkout --rebuild slice "${BUILD_ARGS[@]}" recipe fast50) || fail "--rebuild slice"
expect_eq "$(states "$out")" "HIT HIT HIT HIT RUN HIT" "--rebuild slice: slice runs, export (same plan) hits"
expect_eq "$(jq -r '.[0].stages[4].rebuilt' <<<"$out")" "true" "slice marked rebuilt"
expect_eq "$(results "$out")" "$(results "$first")" "results after --rebuild slice"
pass "--rebuild slice recomputes the slice only"

text=$("${B[@]}" plan --rebuild slice "${BUILD_ARGS[@]}" recipe fast50) || fail "plan --rebuild slice"
expect_contains "$text" "--rebuild slice" "plan names the rebuild as the miss"
expect_contains "$text" "needs slice first" "export waits for the slice"
pass "plan --rebuild slice explains the forced miss"

c0=$("${B[@]}" stats --json | jq '[.stages[] | select(.stage == "calibrate-chunk") | .lookups] | add')
out=$("${B[@]}" build --json --no-checkout --rebuild all "${BUILD_ARGS[@]}" recipe fast50) || fail "--rebuild all"
expect_eq "$(states "$out")" "RUN RUN RUN RUN RUN RUN" "--rebuild all"
expect_eq "$(results "$out")" "$(results "$first")" "every stage recomputed gives the same bits"
c1=$("${B[@]}" stats --json | jq '[.stages[] | select(.stage == "calibrate-chunk") | .lookups] | add')
expect_eq "$((c1 - c0))" "4" "calibrate chunk actions visited (32 samples / 8)"
pass "--rebuild all recomputes every stage and chunk and reproduces the same results"

expect_error 2 "--rebuild bogus: no such stage" "${B[@]}" build --rebuild calibrate,bogus "${BUILD_ARGS[@]}" recipe fast50

printf '[recipe]\nextends = fast50\n[export]\nkv_cache = fp8\n' >"$TMP/recipes/fast50kv.ini"
out=$("${B[@]}" build --json "${BUILD_ARGS[@]}" --out "$TMP/kv" recipe fast50kv) || fail "kv_cache build"
# The linear amax are the same, so are the scores: the slice hits; the export has its own key.
expect_eq "$(states "$out")" "HIT HIT RUN RUN HIT RUN" "kv_cache = fp8: calibrate, sensitivity and export have keys of their own"
amax=$("${B[@]}" cat "$(jq -r '.[0].stages[2].result' <<<"$out")") || fail "cat amax"
expect_eq "$(jq '[.modules | keys[] | select(endswith("k_cache") or endswith("v_cache"))] | length' <<<"$amax")" "8" "K/V amax of 4 layers"
amax50=$("${B[@]}" cat "$(jq -r '.[0].stages[2].result' <<<"$first")") || fail "cat fast50 amax"
expect_eq "$(jq '[.modules | keys[] | select(endswith("_cache"))] | length' <<<"$amax50")" "0" "no K/V amax without kv_cache"
expect_eq "$(jq -r '.quantization.kv_cache_quant_algo' "$TMP/kv/hf_quant_config.json")" "FP8" "hf_quant_config kv algo"
python3 - "$TMP/kv" <<'PY' || fail "k_scale tensors"
import glob, json, struct, sys
names = set()
for f in glob.glob(sys.argv[1] + "/*.safetensors"):
    with open(f, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        names |= set(json.loads(fh.read(n)))
assert sum(k.endswith("k_proj.k_scale") for k in names) == 4, sorted(names)
assert sum(k.endswith("v_proj.v_scale") for k in names) == 4
PY
pass "[export] kv_cache = fp8: K/V amax kept, FP8 KV scales exported"
