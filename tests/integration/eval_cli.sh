#!/bin/bash
# tests/integration/eval_cli.sh: `aqs eval` on the tiny model with planted outliers: KL grows
# with coverage across fast10 ... fast100, the sensitivity order beats the random and
# most-sensitive-first controls at 50 %, the BF16 baseline is exact, a second eval is all cache
# hits, a separate eval file changes the eval set, and bad input is refused with a clear message.
source "$(dirname "$0")/build_common.bash"

printf '[recipe]\nextends = fast50\n[slice]\norder = random\norder_seed = 1\n' > "$TMP/recipes/fast50_random.ini"
printf '[recipe]\nextends = fast50\n[slice]\norder = most_sensitive_first\n' > "$TMP/recipes/fast50_most.ini"
sweep=(fast10 fast20 fast30 fast40 fast50 fast60 fast70 fast80 fast90 fast100)
"${B[@]}" build --no-checkout "${BUILD_ARGS[@]}" recipe "${sweep[@]}" fast50_random fast50_most >/dev/null \
  || fail "sweep build"
EVAL_ARGS=(--model "$TMP/model" --calib-captions "$TMP/captions.txt" --recipes-dir "$TMP/recipes" --quiet)

out=$("${B[@]}" eval --json "${EVAL_ARGS[@]}" "${sweep[@]}" fast50_random fast50_most bf16) || fail "eval"
expect_eq "$(jqr "$out" '[.[] | select(.cached)] | length')" "0" "cached rows of a first eval"
expect_eq "$(jqr "$out" '.[0].n_seqs')" "32" "held-out sequences (default --samples)"
# KL(BF16 || scheme) grows with coverage, and so does the p99
jqr "$out" '[.[0:10][] | .kl_mean]' | python3 -c '
import json, sys
kl = json.load(sys.stdin)
assert all(a < b for a, b in zip(kl, kl[1:])), kl
assert kl[0] > 0, kl' || fail "KL mean is not increasing across fast10 ... fast100: $(jqr "$out" '[.[] | .kl_mean]')"
kl50=$(jqr "$out" '.[4].kl_mean'); klr=$(jqr "$out" '.[10].kl_mean'); klm=$(jqr "$out" '.[11].kl_mean')
awk -v a="$kl50" -v r="$klr" -v m="$klm" 'BEGIN { exit !(a * 3 < r && a * 3 < m) }' \
  || fail "the sensitivity order (KL $kl50) does not beat random ($klr) and most_sensitive_first ($klm) by 3x"
top1=$(jqr "$out" '.[4].top1'); top1r=$(jqr "$out" '.[10].top1')
awk -v a="$top1" -v r="$top1r" 'BEGIN { exit !(a > r) }' || fail "top-1: sensitivity $top1 <= random $top1r"
# effective bits fall with coverage; checkpoints shrink
jqr "$out" '[.[0:10][] | .effective_bits]' | python3 -c '
import json, sys
b = json.load(sys.stdin)
assert all(x > y for x, y in zip(b, b[1:])) and b[-1] < 8.5, b' || fail "effective bits"
# the baseline is the reference itself
expect_eq "$(jqr "$out" '.[12] | "\(.kl_mean) \(.top1) \(.last_mse) \(.effective_bits)"')" "0 1 0 16" "bf16 row"
expect_eq "$(jqr "$out" '.[12].ppl == .[12].ref_ppl')" "true" "bf16 perplexity = reference perplexity"
pass "KL grows with coverage; the sensitivity order beats both controls; baseline exact"

# everything cached: the same numbers, nothing computed
again=$("${B[@]}" eval --json "${EVAL_ARGS[@]}" "${sweep[@]}" fast50_random fast50_most bf16) || fail "eval again"
expect_eq "$(jqr "$again" '[.[] | select(.cached | not)] | length')" "0" "rows computed by a second eval"
expect_eq "$(jqr "$again" '[.[] | .kl_mean]')" "$(jqr "$out" '[.[] | .kl_mean]')" "cached metrics"
table=$("${B[@]}" eval "${EVAL_ARGS[@]}" fast50 bf16) || fail "eval table"
expect_contains "$table" "(cached)" "table marks cached rows"
expect_contains "$table" "32 held-out sequences" "table footer"
pass "a second eval is all cache hits"

# a separate eval file is another eval set: different key, different numbers
sed -n '1,20p' "$TMP/captions.txt" | tac > "$TMP/eval.txt"
sep=$("${B[@]}" eval --json "${EVAL_ARGS[@]}" --captions "$TMP/eval.txt" --samples 10 fast50) || fail "eval --captions"
expect_eq "$(jqr "$sep" '.[0] | "\(.cached) \(.n_seqs)"')" "false 10" "separate eval set"
[ "$(jqr "$sep" '.[0].kl_mean')" != "$kl50" ] || fail "a separate eval file gave the held-out numbers"
pass "--captions FILE evaluates on another set"

# errors
expect_error 1 "no build named 'nope'" "${B[@]}" eval "${EVAL_ARGS[@]}" nope
head -32 "$TMP/captions.txt" > "$TMP/few.txt"
expect_error 1 "calibration uses 32 of them" "${B[@]}" eval --model "$TMP/model" --calib-captions "$TMP/few.txt" \
  --recipes-dir "$TMP/recipes" --quiet fast50
expect_error 2 "bad --precision" "${B[@]}" eval --precision f16 fast50
expect_error 2 "name at least one" "${B[@]}" eval
"$AQS" synth-model --preset tiny --seed 4 --out "$TMP/other" >/dev/null || fail "synth other"
expect_error 1 "not from $TMP/other" "${B[@]}" eval --model "$TMP/other" --calib-captions "$TMP/captions.txt" \
  --recipes-dir "$TMP/recipes" --quiet fast50
"${B[@]}" eval --help | grep -q "held-out" || fail "eval --help"
pass "bad names, exhausted captions, bad options and a foreign source are refused"

# FP8 KV cache: a kv_cache = fp8 twin (its calibrate keeps the K/V amax, so calibrate and
# sensitivity run again; the scores, hence the slice, are the same) exports k_scale/v_scale
# under ModelOpt's names with kv_cache_quant_algo FP8, and its eval differs from the BF16 cache.
printf '[recipe]\nextends = fast50\n[export]\nkv_cache = fp8\n' > "$TMP/recipes/fast50_kv.ini"
kvb=$("${B[@]}" build --json "${BUILD_ARGS[@]}" --out "$TMP/kvckpt" recipe fast50_kv) || fail "build fast50_kv"
expect_eq "$(jq -r '[.[0].stages[] | .state] | join(" ")' <<<"$kvb")" "HIT HIT RUN RUN HIT RUN" "fast50_kv stage states"
expect_eq "$(jq -r '.quantization.kv_cache_quant_algo' "$TMP/kvckpt/hf_quant_config.json")" "FP8" "hf_quant_config"
expect_eq "$(jq -r '.quantization_config.kv_cache_quant_algo' "$TMP/kvckpt/config.json")" "FP8" "config.json"
python3 - "$TMP/kvckpt" <<'PY' || fail "k_scale / v_scale tensors"
import json, struct, sys, glob
names = {}
for path in glob.glob(sys.argv[1] + "/*.safetensors"):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        for k, v in hdr.items():
            if k.endswith("_scale") and ("k_proj.k_scale" in k or "v_proj.v_scale" in k):
                f.seek(8 + n + v["data_offsets"][0])
                names[k] = struct.unpack("<f", f.read(4))[0]
assert len(names) == 8, sorted(names)  # 4 layers x (k, v)
assert all(v > 0 for v in names.values()), names
assert "model.language_model.layers.3.self_attn.v_proj.v_scale" in names
PY
kv=$("${B[@]}" eval --json "${EVAL_ARGS[@]}" fast50 fast50_kv) || fail "eval fast50_kv"
expect_eq "$(jqr "$kv" '.[1].kv_cache')" "fp8" "kv_cache column"
[ "$(jqr "$kv" '.[0].kl_mean')" != "$(jqr "$kv" '.[1].kl_mean')" ] || fail "the FP8 KV cache did not change eval"
pass "FP8 KV cache: scales exported under ModelOpt's names and evaluated"
printf '[recipe]\nextends = fast50\n[export]\nkv_cache = fp4\n' > "$TMP/recipes/bad_kv.ini"
expect_error 1 "bad value 'fp4' for [export] kv_cache (expected bf16 or fp8)" "${B[@]}" build "${BUILD_ARGS[@]}" recipe bad_kv
"$AQS" ls --recipes 2>/dev/null | grep "top50_kv_fp8" >/dev/null || fail "built-in recipe top50_kv_fp8 missing"
pass "kv_cache is validated; built-in kv recipes listed"

# aqs report: every figure decodes at a plausible size with many colours, report.md links each
# one, and a second report evaluates nothing.
rep=$("${B[@]}" report "${EVAL_ARGS[@]}" --out "$TMP/report") || fail "report"
expect_contains "$rep" "report/report.md (4 figures;" "report output"
python3 - "$TMP/report" <<'PY' || fail "report figures"
import os, re, struct, sys, zlib
d = sys.argv[1]
md = open(os.path.join(d, "report.md")).read()
links = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
figs = sorted(f for f in os.listdir(d) if f.endswith(".png"))
assert sorted(links) == figs and len(figs) == 4, (links, figs)
assert "fast50_random" in md and "| bf16 |" in md, md[:400]
for f in figs:
    data = open(os.path.join(d, f), "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f
    w, h, depth, ctype = struct.unpack(">IIBB", data[16:26])
    assert depth == 8 and ctype == 2 and 600 <= w <= 1200 and 200 <= h <= 1400, (f, w, h)
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT": idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + 3 * w), f
    # distinct filtered row payloads: a constant image would give one
    rows = {raw[y * (1 + 3 * w) + 1:(y + 1) * (1 + 3 * w)] for y in range(h)}
    assert len(rows) > 40, (f, len(rows))
PY
again=$("${B[@]}" report "${EVAL_ARGS[@]}" --out "$TMP/report") || fail "report again"
expect_contains "$again" "0 evaluated" "second report"
jrep=$("${B[@]}" report --json "${EVAL_ARGS[@]}" fast10 fast50 bf16 --out "$TMP/report2") || fail "report --json"
expect_eq "$(jqr "$jrep" '"\(.schemes) \(.evaluated)"')" "3 0" "report of named schemes from the store"
[ "$(jqr "$jrep" '.stored_bytes < .family_bytes')" = true ] || fail "the store holds less than the checkpoint files"
expect_error 2 "--out DIR is required" "${B[@]}" report fast50
pass "report: 4 figures linked from report.md, decodable, second run all cached"

# The eval stage in a build: --eval adds it (the key aqs eval uses: a hit for it afterwards, and
# a hit for the build after aqs eval), a recipe [eval] section too; other builds do not show it.
out=$("${B[@]}" build --json --no-checkout --eval "${BUILD_ARGS[@]}" recipe fast60 fast70) || fail "build --eval"
expect_eq "$(jq -r '[.[0].stages[] | .stage] | join(" ")' <<<"$out")" \
  "source calib-set calibrate sensitivity slice export eval" "stages of a build --eval"
expect_eq "$(jq -r '[.[] | .stages[-1].state] | join(" ")' <<<"$out")" "HIT HIT" "eval stage after aqs eval"
printf '[recipe]\nextends = fast\n[slice]\ncoverage = 0.35\n[eval]\nsamples = 12\n' > "$TMP/recipes/fast35e.ini"
out=$("${B[@]}" build --json --no-checkout "${BUILD_ARGS[@]}" recipe fast35e) || fail "build [eval]"
expect_eq "$(jq -r '.[0].stages[-1] | "\(.stage) \(.state)"' <<<"$out")" "eval RUN" "recipe [eval] section"
e12=$("${B[@]}" eval --json "${EVAL_ARGS[@]}" --samples 12 fast35e) || fail "eval fast35e"
expect_eq "$(jqr "$e12" '.[0] | "\(.cached) \(.n_seqs)"')" "true 12" "aqs eval finds the build's eval"
plan=$("${B[@]}" plan --json "${BUILD_ARGS[@]}" recipe fast35e) || fail "plan fast35e"
expect_eq "$(jq -r '[.[0].stages[] | .state] | join(" ")' <<<"$plan")" "HIT HIT HIT HIT HIT HIT HIT" "plan of an evaluated recipe"
out=$("${B[@]}" build --json --no-checkout "${BUILD_ARGS[@]}" recipe fast60) || fail "build without eval"
expect_eq "$(jq -r '.[0].stages | length' <<<"$out")" "6" "stages of a build without eval"
printf '[recipe]\nextends = fast\n[eval]\nsamples = 0\n' > "$TMP/recipes/bad_eval.ini"
expect_error 1 "bad value '0' for [eval] samples" "${B[@]}" build "${BUILD_ARGS[@]}" recipe bad_eval
pass "eval stage: build --eval and [eval] share aqs eval's cached actions"
grep -q "order quantizes: lm.2.qkv, lm.1.down\.\|order quantizes: lm.1.down, lm.2.qkv\." "$TMP/report/report.md" \
  || fail "the heat map's outlined groups are not the planted ones: $(grep -o 'order quantizes: [^.]*' "$TMP/report/report.md")"
pass "the report outlines the planted groups"
