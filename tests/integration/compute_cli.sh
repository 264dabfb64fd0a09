#!/bin/bash
# tests/integration/compute_cli.sh: `aqs calibrate` and `aqs sensitivity` end to end on the tiny
# synthetic model: amax table and scores written, planted outlier groups rank most sensitive,
# re-runs give identical bytes, one JSON-lines file split in two gives the same scores, and the
# user-reachable errors (no CUDA, missing/invalid inputs, long sequences) name what is wrong.
set -u
AQS=${AQS_BIN:?AQS_BIN not set}
[ -x "$AQS" ] || { echo "skipping: $AQS missing"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/aqs-compute-cli-XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_fail() { # expect_fail "message substring" cmd...
  local want=$1; shift
  local out
  out=$("$@" 2>&1) && fail "expected failure: $*"
  grep -qF -- "$want" <<<"$out" || fail "expected '$want' in: $out"
}

"$AQS" synth-model --preset tiny --seed 7 --out "$T/model" \
  --outliers lm.1.down:1e5,lm.2.qkv:1e5 >/dev/null || fail "synth-model"
python3 - "$T/tokens.jsonl" <<'PY'
import json, random, sys
r = random.Random(5)
with open(sys.argv[1], "w") as f:
    for _ in range(8):
        f.write(json.dumps([r.randrange(0, 600) for _ in range(r.randint(8, 24))]) + "\n")
PY
head -4 "$T/tokens.jsonl" > "$T/part1.jsonl"
tail -4 "$T/tokens.jsonl" > "$T/part2.jsonl"

"$AQS" calibrate --model "$T/model" --tokens "$T/tokens.jsonl" --batch-seqs 4 \
  --out "$T/amax.json" 2>/dev/null || fail "calibrate"
python3 - "$T/amax.json" <<'PY' || fail "amax table content"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["format"] == "aqs-amax-1" and d["n_seqs"] == 8, d
mods = d["modules"]
assert len(mods) == 4 * 7 + 4 * 2, len(mods)  # 7 linears and the K/V cache amax per layer
assert mods["model.language_model.layers.2.self_attn.k_cache"]["weight_amax"] == 0
down1 = mods["model.language_model.layers.1.mlp.down_proj"]["weight_amax"]
down0 = mods["model.language_model.layers.0.mlp.down_proj"]["weight_amax"]
assert down1 > 1000 * down0, (down1, down0)  # the planted outlier channels
assert all(m["input_amax"] > 0 for m in mods.values())
PY

for method in gradient kl_div; do
  "$AQS" sensitivity --model "$T/model" --tokens "$T/tokens.jsonl" --batch-seqs 4 \
    --amax "$T/amax.json" --method $method --out "$T/$method.json" --json > "$T/$method.out" \
    2>/dev/null || fail "sensitivity $method"
  python3 - "$T/$method.json" $method <<'PY' || fail "$method ranking"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["method"] == sys.argv[2] and d["n_batches"] == 2 and len(d["groups"]) == 16, d["method"]
top = set(d["ranking"][-2:])
assert top == {"lm.1.down", "lm.2.qkv"}, d["ranking"]
g = d["groups"][0]
assert g["formats"]["bf16"]["cost_bytes"] == 2 * g["params"]
assert g["formats"]["fp8"]["cost_bytes"] < g["formats"]["bf16"]["cost_bytes"]
PY
done
# determinism and batch files: the same batches from two files give the same bytes
"$AQS" sensitivity --model "$T/model" --tokens "$T/part1.jsonl" --tokens "$T/part2.jsonl" \
  --amax "$T/amax.json" --out "$T/split.json" 2>/dev/null || fail "sensitivity split"
cmp -s "$T/gradient.json" "$T/split.json" || fail "split input changed the scores"

# errors a user can reach
if ! "$AQS" calibrate --model "$T/model" --tokens "$T/tokens.jsonl" --out "$T/x.json" \
     --backend cuda >/dev/null 2>&1; then
  # Built without CUDA, or built with it on a machine without a GPU: both say to use the CPU.
  expect_fail "use --backend cpu" "$AQS" calibrate --model "$T/model" --tokens "$T/tokens.jsonl" \
    --out "$T/x.json" --backend cuda
fi
expect_fail "unknown backend 'tpu'" "$AQS" calibrate --model "$T/model" \
  --tokens "$T/tokens.jsonl" --out "$T/x.json" --backend tpu
expect_fail "--amax is required" "$AQS" sensitivity --model "$T/model" \
  --tokens "$T/tokens.jsonl" --out "$T/x.json"
expect_fail "unknown sensitivity method 'fisher'" "$AQS" sensitivity --model "$T/model" \
  --tokens "$T/tokens.jsonl" --amax "$T/amax.json" --out "$T/x.json" --method fisher
expect_fail "more than the maximum 10" "$AQS" calibrate --model "$T/model" \
  --tokens "$T/tokens.jsonl" --out "$T/x.json" --max-seq-len 10
printf '[1, 2, 3]\n[4, "five"]\n' > "$T/bad.jsonl"
expect_fail "bad.jsonl:2: element 1 is not a token id" "$AQS" calibrate --model "$T/model" \
  --tokens "$T/bad.jsonl" --out "$T/x.json"
echo '[1, 2, 99999]' > "$T/oov.jsonl"
expect_fail "token id 99999 outside the vocabulary" "$AQS" calibrate --model "$T/model" \
  --tokens "$T/oov.jsonl" --out "$T/x.json"
: > "$T/empty.jsonl"
expect_fail "empty.jsonl: no token sequences" "$AQS" calibrate --model "$T/model" \
  --tokens "$T/tokens.jsonl" --tokens "$T/empty.jsonl" --out "$T/x.json"
expect_fail "nothing.jsonl" "$AQS" calibrate --model "$T/model" --tokens "$T/nothing.jsonl" \
  --out "$T/x.json"
echo '{"format": "aqs-amax-1", "modules": {}}' > "$T/empty_amax.json"
expect_fail "amax table has no entry for model.language_model.layers.0" "$AQS" sensitivity \
  --model "$T/model" --tokens "$T/tokens.jsonl" --amax "$T/empty_amax.json" --out "$T/x.json"
expect_fail "config.json" "$AQS" calibrate --model "$T" --tokens "$T/tokens.jsonl" --out "$T/x.json"
"$AQS" calibrate --help | grep -q "usage: aqs calibrate" || fail "calibrate --help"
"$AQS" sensitivity --help | grep -q "usage: aqs sensitivity" || fail "sensitivity --help"
echo "ok"
