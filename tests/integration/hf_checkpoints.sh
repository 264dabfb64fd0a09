#!/usr/bin/env bash
# tests/integration/hf_checkpoints.sh: checkpoints as the Hugging Face hub ships them (issue 14):
# transformers 4.x (config fields at the top level, rope_scaling, torch_dtype; tensors
# model.layers.* / visual.*) and 5.x (text_config, model.language_model.* / model.visual.*), each
# sharded with model.safetensors.index.json, without generation_config.json, with extra files
# (chat_template.json, README.md) that the checkpoint carries along; built end to end and checked
# out. Then inputs from real life that must be refused: a config.json with fewer layers than the
# tensors, and a NaN / Inf in a vision weight (named, nothing exported).
source "$(dirname "$0")/build_common.bash"

# fixture NAMING DIR: a tiny sharded checkpoint in that naming, dressed as a hub download.
fixture() {
  "$AQS" synth-model --preset tiny --seed 3 --naming "$1" --shard-size 300000 --out "$2" >/dev/null 2>&1 \
    || fail "synth-model $1"
  rm "$2/generation_config.json"
  printf '{"chat_template": "{%% for m in messages %%}{{ m.content }}{%% endfor %%}"}\n' >"$2/chat_template.json"
  printf -- '---\nlicense: apache-2.0\n---\n# tiny %s model\n' "$1" >"$2/README.md"
  if [ "$1" = hf4 ]; then
    python3 - "$2/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
t = c.pop("text_config")
rope = t.pop("rope_parameters")
for k in ("model_type", "dtype"):
    t.pop(k, None)
c.update(t)
c["rope_scaling"] = {"type": "mrope", "mrope_section": rope["mrope_section"]}
c["torch_dtype"] = c.pop("dtype")
c["transformers_version"] = "4.49.0"
json.dump(c, open(p, "w"), indent=2)
PY
  fi
}

for naming in hf4 hf5; do
  M="$TMP/$naming"
  fixture "$naming" "$M"
  shards=$(ls "$M"/model-*-of-*.safetensors | wc -l)
  [ "$shards" -ge 2 ] || fail "$naming fixture has $shards shard(s)"
  if [ "$naming" = hf4 ]; then
    jq -e '.num_hidden_layers == 4 and (has("text_config") | not)' "$M/config.json" >/dev/null || fail "4.x config"
    jq -e '.weight_map | keys | any(startswith("visual.blocks."))' "$M/model.safetensors.index.json" >/dev/null \
      || fail "4.x vision names"
    prefix="model.layers."
  else
    prefix="model.language_model.layers."
  fi
  out=$("${B[@]}" build --json --model "$M" --captions "$TMP/captions.txt" --recipes-dir "$TMP/recipes" --quiet \
        --out "$TMP/out-$naming" recipe fast50) || fail "build on the $naming checkpoint"
  D="$TMP/out-$naming"
  for f in chat_template.json README.md config.json hf_quant_config.json tokenizer.json preprocessor_config.json; do
    [ -f "$D/$f" ] || fail "$naming: $f missing from the checkout"
  done
  [ ! -e "$D/generation_config.json" ] || fail "$naming: a generation_config.json appeared"
  cmp "$M/chat_template.json" "$D/chat_template.json" || fail "$naming: chat_template.json changed"
  cmp "$M/README.md" "$D/README.md" || fail "$naming: README.md changed"
  names=$(python3 - "$D" <<'PY'
import json, struct, sys, glob
names = []
for f in glob.glob(sys.argv[1] + "/*.safetensors"):
    with open(f, "rb") as h:
        n = struct.unpack("<Q", h.read(8))[0]
        names += [k for k in json.loads(h.read(n)) if k != "__metadata__"]
print("\n".join(sorted(names)))
PY
)
  grep -qE "^${prefix//./\\.}[0-9]+\\.(self_attn|mlp)\\.[a-z_]+\\.weight_scale$" <<<"$names" || fail "$naming: FP8 names not in its naming"
  [ "$naming" = hf4 ] && { grep -q "^model.language_model" <<<"$names" && fail "hf4 checkpoint renamed to 5.x"; }
  expect_eq "$(jq -r '.[0].summary.fp8' <<<"$out")" "8" "$naming: FP8 groups"
  pass "$naming checkpoint (sharded, no generation_config.json, chat template and README) built end to end"
done

# Both namings of the same weights quantize to the same plan and the same FP8 bytes.
sum_of() { python3 - "$1" "$2" <<'PY'
import json, struct, sys, glob, hashlib
d, strip = sys.argv[1], sys.argv[2]
out = {}
for f in glob.glob(d + "/*.safetensors"):
    with open(f, "rb") as h:
        n = struct.unpack("<Q", h.read(8))[0]
        hdr = json.loads(h.read(n)); base = 8 + n
        for k, v in hdr.items():
            if k == "__metadata__" or not k.endswith(".weight") or v["dtype"] != "F8_E4M3": continue
            h.seek(base + v["data_offsets"][0]); b = h.read(v["data_offsets"][1] - v["data_offsets"][0])
            out[k.replace(strip, "")] = hashlib.sha256(b).hexdigest()
print(json.dumps(out, sort_keys=True))
PY
}
expect_eq "$(sum_of "$TMP/out-hf4" model.layers.)" "$(sum_of "$TMP/out-hf5" model.language_model.layers.)" \
  "FP8 weights of the 4.x and 5.x checkpoints"
pass "the 4.x and 5.x namings of one model give the same FP8 weights"

# config.json says 3 layers, the tensors have 4: an error naming both, nothing exported.
cp -r "$TMP/hf5" "$TMP/short"
jq '.text_config.num_hidden_layers = 3 | .text_config.max_window_layers = 3' "$TMP/hf5/config.json" >"$TMP/short/config.json"
expect_error 1 "config.json has num_hidden_layers = 3 (layers 0..2) but the checkpoint has tensor \"model.language_model.layers.3." \
  "${B[@]}" build --model "$TMP/short" --captions "$TMP/captions.txt" --recipes-dir "$TMP/recipes" --quiet \
  --out "$TMP/out-short" recipe fast50
[ ! -e "$TMP/out-short" ] || fail "a checkpoint was written for the mismatched config"
pass "config.json layers vs checkpoint tensors: an error naming both"

# A NaN in a vision weight (copied as BF16 by an lm_only export): named, nothing exported.
cp -r "$TMP/hf5" "$TMP/nan"
python3 - "$TMP/nan" <<'PY'
import json, struct, sys, glob
for f in sorted(glob.glob(sys.argv[1] + "/*.safetensors")):
    with open(f, "r+b") as h:
        n = struct.unpack("<Q", h.read(8))[0]
        hdr = json.loads(h.read(n))
        name = "model.visual.blocks.1.mlp.down_proj.weight"
        if name in hdr:
            h.seek(8 + n + hdr[name]["data_offsets"][0] + 2 * 5)
            h.write(struct.pack("<H", 0x7fc0))  # a BF16 quiet NaN at element 5
            sys.exit(0)
sys.exit("tensor not found")
PY
expect_error 1 "tensor model.visual.blocks.1.mlp.down_proj.weight contains NaN or Inf (element 5)" \
  "${B[@]}" build --model "$TMP/nan" --captions "$TMP/captions.txt" --recipes-dir "$TMP/recipes" --quiet \
  --out "$TMP/out-nan" recipe fast50
[ ! -e "$TMP/out-nan" ] || fail "a checkpoint was written with a NaN"
pass "NaN in a vision weight: refused, naming the tensor"
