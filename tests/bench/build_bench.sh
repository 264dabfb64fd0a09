#!/bin/bash
# tests/bench/build_bench.sh AQS WORKDIR [BACKEND]: the build benchmark of issue 6 on the 3b
# synthetic model (run on the GPU machine): cold single scheme, cold 10-scheme sweep, warm
# rebuild, top60 after top50, one checkout, and the sweep's store size against the BF16 model.
# Environment: PRESET (3b), CAPTIONS=varied (default, COCO-like lengths) | fixed, MODEL=DIR (use
# that checkpoint instead of making one), QUICK=1 (only the cold single scheme and the cold sweep),
# SCHEMES=N (also the cold sweep with N exports at once, AQS_EXPORT_SCHEMES=N, whose checkpoint
# digests must be those of the default sweep, one export after another).
# Prints one line per measurement and a JSON summary on the last line.
set -euo pipefail
AQS=$(realpath "$1"); W=$2; BACKEND=${3:-cuda}
mkdir -p "$W"
export AQS_PROGRESS=never
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }

t=$(now)
if [ -n "${MODEL:-}" ]; then
  rm -rf "$W/model" && ln -s "$(realpath "$MODEL")" "$W/model"
else
  "$AQS" synth-model --preset "${PRESET:-3b}" --seed 1 --outliers lm.5.down:100000,lm.6.qkv:100000 --out "$W/model" >/dev/null
  echo "synth-model ${PRESET:-3b}: $(since "$t")s"
fi
# Captions: COCO-like lengths by default (90 % of 8-20 words, peaking near 10-12, a tail to 50),
# so every batch has its own token count; CAPTIONS=fixed gives the old near-constant 12-word ones.
python3 - "$W/captions.txt" "${CAPTIONS:-varied}" <<'PY'
import random, sys
random.seed(5)
subj = ["man", "woman", "dog", "cat", "bus", "child", "bird", "horse", "surfer", "chef"]
act = ["sitting on", "next to", "riding", "looking at", "holding", "walking along", "eating"]
obj = ["a wooden bench", "the beach", "a busy street", "a green field", "a table", "the snow"]
extra = ["with", "a", "red", "small", "old", "large", "white", "near", "two", "people", "in", "the",
         "background", "while", "tree", "building", "and", "some", "cars", "parked", "behind", "it"]
def varied():
    n = min(max(int(random.gauss(11.5, 2.8)), 8), 20) if random.random() < 0.9 else random.randint(21, 50)
    words = f"A {random.choice(subj)} {random.choice(act)} {random.choice(obj)}".split()
    while len(words) < n:
        words.append(random.choice(extra))
    return " ".join(words[:n]) + "."
with open(sys.argv[1], "w") as f:
    for _ in range(1000):
        if sys.argv[2] == "fixed":
            f.write(f"A {random.choice(subj)} {random.choice(act)} {random.choice(obj)} on a sunny day.\n")
        else:
            f.write(varied() + "\n")
PY
model_bytes=$(du -cb "$W"/model/*.safetensors | tail -1 | cut -f1)
ARGS=(--model "$W/model" --captions "$W/captions.txt" --backend "$BACKEND" --quiet --no-checkout)
sweep=(top10 top20 top30 top40 top50 top60 top70 top80 top90 top100)

"$AQS" --store "$W/s1" init >/dev/null
t=$(now); "$AQS" --store "$W/s1" build "${ARGS[@]}" recipe top50 >"$W/single.txt"; single=$(since "$t")
echo "cold single scheme (top50): ${single}s"
top60=null; warm=null; checkout=null
if [ -z "${QUICK:-}" ]; then
  t=$(now); "$AQS" --store "$W/s1" build "${ARGS[@]}" recipe top60 >"$W/top60.txt"; top60=$(since "$t")
  echo "top60 after top50: ${top60}s"
fi
"$AQS" --store "$W/s2" init >/dev/null
t=$(now); "$AQS" --store "$W/s2" build "${ARGS[@]}" recipe "${sweep[@]}" >"$W/sweep.txt"; sweep_s=$(since "$t")
echo "cold 10-scheme sweep: ${sweep_s}s"
if [ -z "${QUICK:-}" ]; then
  t=$(now); "$AQS" --store "$W/s2" build "${ARGS[@]}" recipe "${sweep[@]}" >"$W/warm.txt"; warm=$(since "$t")
  echo "warm rebuild of the sweep: ${warm}s"
fi
pool_s=null
if [ -n "${SCHEMES:-}" ]; then
  "$AQS" --store "$W/s3" init >/dev/null
  t=$(now); AQS_EXPORT_SCHEMES=$SCHEMES "$AQS" --store "$W/s3" build "${ARGS[@]}" recipe "${sweep[@]}" >"$W/pool.txt"
  pool_s=$(since "$t")
  echo "cold 10-scheme sweep, $SCHEMES exports at once: ${pool_s}s"
  ckpts() { "$AQS" --store "$1" ls --json | python3 -c 'import json,sys; print("\n".join(sorted(b["recipe"] + " " + b["checkpoint"] for b in json.load(sys.stdin))))'; }
  if [ "$(ckpts "$W/s2")" != "$(ckpts "$W/s3")" ]; then echo "checkpoint digests differ between the two sweeps" >&2; exit 1; fi
  echo "checkpoint digests: the same in both sweeps"
fi
stored=$("$AQS" --store "$W/s2" stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_stored"])')
if [ -z "${QUICK:-}" ]; then
  t=$(now); "$AQS" --store "$W/s2" checkout top50 "$W/ck50" >/dev/null; checkout=$(since "$t")
  echo "checkout top50 (reflink mode): ${checkout}s"
fi
ratio=$(awk -v a="$stored" -v b="$model_bytes" 'BEGIN{printf "%.3f", a/b}')
sweep_ratio=$(awk -v a="$sweep_s" -v b="$single" 'BEGIN{printf "%.2f", a/b}')
echo "store after the sweep: $stored bytes for a $model_bytes-byte BF16 model: ${ratio}x"
echo "sweep / single: ${sweep_ratio}x"
cat "$W/single.txt"
printf '{"single_s": %s, "top60_after_top50_s": %s, "sweep_s": %s, "pool_sweep_s": %s, "warm_sweep_s": %s, "checkout_s": %s, "store_over_bf16": %s, "sweep_over_single": %s}\n' \
  "$single" "$top60" "$sweep_s" "$pool_s" "$warm" "$checkout" "$ratio" "$sweep_ratio"
