#!/bin/bash
# tests/integration/vision_build.sh: the all_layers family on image+caption rows (tiny synthetic
# model with planted outliers in the vision group vis.0.gate_up, the fixture images at their odd
# sizes, 16-bit, gray, alpha and palette PNGs and JPEGs): a sweep builds and proves its family,
# the planted vision group is left for last, vision and language groups are ranked together, the
# three export formats share their tensors and carry the consumer verdict, candidates can be
# restricted to visual.* / lm.*, and bad rows are named (or skipped and counted).
source "$(dirname "$0")/vision_common.bash"
[ "$n" -ge 24 ] || fail "only $n rows"
# Small sample counts: 24 calibration rows, 16 scored.
for r in all_layers_top10 all_layers_top50 all_layers_top90 all_layers_top100; do
  printf '[recipe]\nextends = %s\n[calib]\nsamples = 24\nmax_len = 256\n[sensitivity]\nscore_samples = 16\n' "$r" \
    >"$TMP/recipes/t_$r.ini"
done
printf '[recipe]\nextends = t_all_layers_top50\n[export]\nformat = compressed_tensors\n' >"$TMP/recipes/t50_ct.ini"
printf '[recipe]\nextends = t_all_layers_top50\n[export]\nformat = modelopt\n' >"$TMP/recipes/t50_mo.ini"
printf '[recipe]\nextends = t_all_layers_top50\n[slice]\ncandidates = visual.*\n' >"$TMP/recipes/t50_vis.ini"
"$AQS" --store "$TMP/store" init >/dev/null || fail "init"
B=("$AQS" --store "$TMP/store")
ARGS=(--model "$TMP/model" --images "$TMP/data/rows.jsonl" --root "$TMP/data" --recipes-dir "$TMP/recipes" --quiet)

# The sweep: one calib set, calibration and sensitivity; the build proves the family.
out=$("${B[@]}" build --json --no-checkout "${ARGS[@]}" recipe t_all_layers_top10 t_all_layers_top50 \
  t_all_layers_top90 t_all_layers_top100) || fail "sweep: $out"
expect_eq "$(jq '[.[] | .stages[] | select(.stage == "sensitivity" and .state == "RUN")] | length' <<<"$out")" "1" \
  "sensitivity computed once for the sweep"
for r in t_all_layers_top10 t_all_layers_top50 t_all_layers_top90 t_all_layers_top100; do
  "${B[@]}" checkout "$r" "$TMP/ck/$r" >/dev/null || fail "checkout $r"
done
python3 - "$TMP/ck" <<'PY' || fail "sweep content"
import json, sys
root = sys.argv[1]
def man(r): return json.load(open(f"{root}/{r}/aqs-manifest.json"))
m50 = man("t_all_layers_top50")
assert m50["scope"] == "all_layers" and m50["export_format"] == "modelopt_mixed", m50["scope"]
groups = {g["id"]: g for g in m50["groups"]}
cands = [g for g in m50["groups"] if g["candidate"]]
assert len(cands) == 27 and "score" in groups["vis.patch_embed"], len(cands)  # scored, all groups
ranked = sorted(cands, key=lambda g: g["score"])
assert ranked[-1]["id"] == "vis.0.gate_up", ranked[-1]["id"]   # the planted group: most sensitive
assert ranked[-1]["score"] > 10 * ranked[-2]["score"]
# vision and language groups interleave in the ranking (ranked together, not tower by tower)
towers = [g["id"].split(".")[0] for g in ranked[:-1]]
assert any(towers[i] != towers[i + 1] for i in range(len(towers) - 1)) and "vis" in towers[:6], towers
for r, n_fp8 in (("t_all_layers_top10", 3), ("t_all_layers_top50", 13), ("t_all_layers_top90", 23)):
    m = man(r)
    fmt = {g["id"]: g["format"] for g in m["groups"]}
    assert fmt["vis.0.gate_up"] == "bf16", r                  # left for last
    assert m["n_fp8"] == n_fp8, (r, m["n_fp8"])
    c = m["consumers"]["vllm-modelopt_mixed"]
    assert c["loads"] and len(c["fp8"]) > 0, c
    assert not m["consumers"]["vllm-modelopt"]["reads_format"]
m100 = man("t_all_layers_top100")
f100 = {g["id"]: g["format"] for g in m100["groups"]}
assert f100["vis.0.gate_up"] == "fp8" and m100["n_fp8"] == 26
assert f100["vis.patch_embed"] == "bf16"                     # disabled: no vLLM loader takes it
hq = json.load(open(f"{root}/t_all_layers_top50/hf_quant_config.json"))["quantization"]
assert hq["quant_algo"] == "MIXED_PRECISION" and any("visual" in k for k in hq["quantized_layers"]), hq
PY

# Formats: same plan, same FP8 tensor objects, different metadata and verdicts.
out=$("${B[@]}" build --json --no-checkout "${ARGS[@]}" recipe t50_ct t50_mo) || fail "formats: $out"
expect_eq "$(jq -r '[.[0].stages[] | .state] | join(" ")' <<<"$out")" "HIT HIT HIT HIT HIT RUN" "t50_ct reuses all but export"
for r in t50_ct t50_mo; do "${B[@]}" checkout "$r" "$TMP/ck/$r" >/dev/null || fail "checkout $r"; done
python3 - "$TMP/ck" <<'PY' || fail "format content"
import json, sys
root = sys.argv[1]
mix, ct, mo = (json.load(open(f"{root}/{r}/aqs-manifest.json")) for r in ("t_all_layers_top50", "t50_ct", "t50_mo"))
fp8 = [n for n, t in mix["tensors"].items() if t["dtype"] == "F8_E4M3"]
assert len(fp8) > 0
for n in fp8:
    assert ct["tensors"][n]["sha256"] == mix["tensors"][n]["sha256"] == mo["tensors"][n]["sha256"], n
    s = n[:-len(".weight")] + ".weight_scale"
    assert ct["tensors"][s]["sha256"] == mix["tensors"][s]["sha256"], s
assert ct["export_format"] == "compressed_tensors"
qc = json.load(open(f"{root}/t50_ct/config.json"))["quantization_config"]
assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "float-quantized", qc
assert ct["consumers"]["vllm-compressed-tensors"]["loads"]
assert ct["consumers"]["transformers"]["loads"] and not ct["consumers"]["transformers"]["fp8_codes_as_bf16"]
# ModelOpt FP8 with vision groups in FP8: vLLM's modelopt loader fails, and says which module
v = mo["consumers"]["vllm-modelopt"]
assert not v["loads"] and "visual" in v["reason"] and "vllm.visual_unquantized" in v["rules"], v
PY
show=$("${B[@]}" show t50_mo) || fail "show t50_mo"
grep -q "vllm-modelopt: fails" <<<"$show" || fail "show lacks the verdict: $show"

# Candidates restricted to the vision tower.
"${B[@]}" build --no-checkout "${ARGS[@]}" recipe t50_vis >/dev/null || fail "t50_vis"
"${B[@]}" checkout t50_vis "$TMP/ck/t50_vis" >/dev/null || fail "checkout t50_vis"
python3 - "$TMP/ck/t50_vis/aqs-manifest.json" <<'PY' || fail "visual.* candidates"
import json, sys
m = json.load(open(sys.argv[1]))
fp8 = [g["id"] for g in m["groups"] if g["format"] == "fp8"]
assert len(fp8) == 5 and all(i.startswith("vis.") for i in fp8), fp8  # half of 10 vision candidates
PY

# Bad rows: a truncated PNG and a caption holding its own <|image_pad|> are named by file:line.
cp "$TMP/data/rows.jsonl" "$TMP/data/bad.jsonl"
head -c 300 "$TMP/data/imgs/rgb_283x157.png" >"$TMP/data/imgs/cut.png"
echo '{"image": "imgs/cut.png", "caption": "cut short"}' >>"$TMP/data/bad.jsonl"
bad_args=(--model "$TMP/model" --images "$TMP/data/bad.jsonl" --root "$TMP/data" --recipes-dir "$TMP/recipes" --quiet)
printf '[recipe]\nextends = t_all_layers_top50\n[calib]\nsamples = %s\n' "$((n + 1))" >"$TMP/recipes/t_all.ini"
expect_error 1 "bad.jsonl:$((n + 1)): $TMP/data/imgs/cut.png: corrupt PNG" "${B[@]}" build --no-checkout "${bad_args[@]}" recipe t_all
head -n "$n" "$TMP/data/rows.jsonl" >"$TMP/data/bad.jsonl"
echo '{"image": "imgs/rgb_101x67.png", "caption": "look <|image_pad|> here"}' >>"$TMP/data/bad.jsonl"
expect_error 1 "bad.jsonl:$((n + 1)): $TMP/data/imgs/rgb_101x67.png: caption holds vision tokens of its own" \
  "${B[@]}" build --no-checkout "${bad_args[@]}" recipe t_all
out=$("${B[@]}" calib --model "$TMP/model" --images "$TMP/data/bad.jsonl" --root "$TMP/data" --samples "$n" \
  --skip-bad --json) || fail "calib --skip-bad: $out"
expect_eq "$(jq .skipped <<<"$out")" "1" "skipped rows"
pass "all_layers sweep on images: family proven, planted vision group last, formats share tensors, verdicts, bad rows named"
