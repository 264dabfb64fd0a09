#!/usr/bin/env bash
# tests/conformance/run_eval_device.sh CARRY: the eval helper's run on the GPU machine, from a carry
# folder made by scripts/device-pack.sh (plus this script and eval_conformance.py copied into it).
#  1. gpu_test_fp8_codec (the dequantize_fp8 op of the FP8 KV cache) and gpu_test_loss_reduce
#     (eval's kl_argmax_rows among the losses) against their CPU twins;
#  2. conformance: a tiny sweep with an FP8 KV cache scheme, evaluated by aqs (--precision f32) and
#     by transformers + torch (eval_conformance.py): perplexity and KL within 1 % relative;
#  3. cost: the 3b synthetic model, a 10-scheme coverage sweep + controls built with --backend cuda,
#     then `aqs eval --backend cuda` of the whole sweep (cold, then all cached); each row's
#     "seconds" is that scheme's cost (the first row's includes the BF16 reference).
#  4. image eval on CUDA against the CPU: the tiny model's all_layers sweep (planted vision outlier)
#     on the held-out fixture image rows, `aqs eval --precision f32` on both backends.
# Writes into $OUT: gpu_tests.txt, conformance.json, eval_tiny.json, cost.txt, eval_3b.json,
# images_cpu.json, images_cuda.json, images.txt. PARTS (default "1 2 3 4") picks parts.
set -uo pipefail
carry="$(cd "$1" && pwd)"
repo="$(cd "$carry/.." && pwd)"
PARTS="${PARTS:-1 2 3 4}"
part() { [[ " $PARTS " == *" $1 "* ]]; }
. "$carry/env.sh"
W=$(mktemp -d /tmp/aqs-eval-XXXXXX)
cd "$W"
export AQS_PROGRESS=never
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }  # no bc on the device image
part 1 && for t in gpu_test_fp8_codec gpu_test_loss_reduce; do
  "$carry/bin/$t" >> "$OUT/gpu_tests.txt" 2>&1; echo "$t rc=$?" | tee -a "$OUT/gpu_tests.txt"
done

# ---- 2. conformance on the tiny model ----
if part 2; then
aqs synth-model --preset tiny --seed 3 --outliers lm.1.down:100000,lm.2.qkv:100000 --out model >/dev/null
python3 - <<'PY'
import random
random.seed(5)
subj = ["man", "woman", "dog", "cat", "bus", "child", "bird", "horse"]
act = ["sitting on", "next to", "riding", "looking at", "holding", "walking along"]
obj = ["a bench", "the beach", "a street", "a field", "a table", "the snow"]
lines = [f"A {random.choice(subj)} {random.choice(act)} {random.choice(obj)}.\n" for _ in range(232)]
open("captions.txt", "w").writelines(lines[:200])
open("eval.txt", "w").writelines(lines[200:])
PY
mkdir recipes
printf '[recipe]\nextends = lm_only\n[calib]\nsamples = 32\nmax_len = 64\n[sensitivity]\nscore_samples = 16\n' > recipes/fast.ini
for x in 10 50 100; do printf '[recipe]\nextends = fast\n[slice]\ncoverage = %s\n' "0.$x" > recipes/fast$x.ini; done
printf '[recipe]\nextends = fast\n[slice]\ncoverage = 1.0\n' > recipes/fast100.ini
printf '[recipe]\nextends = fast50\n[slice]\norder = random\norder_seed = 1\n' > recipes/fast50_random.ini
printf '[recipe]\nextends = fast50\n[export]\nkv_cache = fp8\n' > recipes/fast50_kv.ini
aqs --store st init >/dev/null
A=(--model model --recipes-dir recipes --quiet)
for r in fast10 fast50 fast100 fast50_random fast50_kv; do
  aqs --store st build "${A[@]}" --captions captions.txt --out "ck_$r" recipe $r >/dev/null || echo "build $r failed"
done
aqs tokenize --tokenizer model --json < eval.txt > tokens.jsonl
aqs --store st eval --json "${A[@]}" --calib-captions captions.txt --captions eval.txt --samples 32 --precision f32 \
  fast10 fast50 fast100 fast50_random fast50_kv > "$OUT/eval_tiny.json"
python3 "$carry/eval_conformance.py" --source model --tokens tokens.jsonl --ours "$OUT/eval_tiny.json" \
  --case fast10 ck_fast10 --case fast50 ck_fast50 --case fast100 ck_fast100 --case fast50_random ck_fast50_random \
  --case fast50_kv ck_fast50_kv \
  --json "$OUT/conformance.json" 2>&1 | tail -6
fi

# ---- 3. cost on the 3b model ----
part 3 && {
  t0=$(now); aqs synth-model --preset 3b --threads 16 --out m3b >/dev/null; t1=$(now)
  echo "synth-model 3b: $(secs "$t0" "$t1") s"
  nvidia-smi --query-gpu=name --format=csv,noheader
  printf '[recipe]\nextends = lm_only\n[calib]\nsamples = 64\nmax_len = 128\n[sensitivity]\nscore_samples = 32\n' > recipes/b.ini
  names=()
  for x in 10 20 30 40 50 60 70 80 90; do printf '[recipe]\nextends = b\n[slice]\ncoverage = 0.%s\n' $x > recipes/b$x.ini; names+=(b$x); done
  printf '[recipe]\nextends = b\n[slice]\ncoverage = 1.0\n' > recipes/b100.ini; names+=(b100)
  printf '[recipe]\nextends = b50\n[slice]\norder = random\n' > recipes/b50_random.ini; names+=(b50_random)
  printf '[recipe]\nextends = b50\n[slice]\norder = most_sensitive_first\n' > recipes/b50_most.ini; names+=(b50_most)
  B=(--model m3b --recipes-dir recipes --quiet)
  t0=$(now); aqs --store st build --no-checkout --backend cuda "${B[@]}" --captions captions.txt recipe "${names[@]}" >/dev/null; t1=$(now)
  echo "build of ${#names[@]} schemes (cuda): $(secs "$t0" "$t1") s"
  t0=$(now); aqs --store st eval --json --backend cuda "${B[@]}" --calib-captions captions.txt --samples 64 "${names[@]}" bf16 > "$OUT/eval_3b.json"; t1=$(now)
  echo "eval of ${#names[@]} schemes + bf16, 64 held-out captions (cuda, bf16), cold: $(secs "$t0" "$t1") s"
  t0=$(now); aqs --store st eval --json --backend cuda "${B[@]}" --calib-captions captions.txt --samples 64 "${names[@]}" bf16 > /dev/null; t1=$(now)
  echo "same eval again (all cached): $(secs "$t0" "$t1") s"
  python3 - "$OUT/eval_3b.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    print(f"{r['name']:12s} {r['seconds']:7.2f} s  kl {r['kl_mean']:.3e}  ppl {r['ppl']:.4f}  top1 {r['top1']:.4f}")
PY
} 2>&1 | tee "$OUT/cost.txt"

# ---- 4. image eval, CUDA against the CPU ----
part 4 && {
  aqs synth-model --preset tiny --seed 3 --outliers vis.0.gate_up:100000 --out vmodel >/dev/null
  mkdir -p data/imgs vrecipes
  n=0
  for f in "$repo"/tests/fixtures/images/*.png "$repo"/tests/fixtures/images/*.jpg; do
    b=$(basename "$f"); cp "$f" "data/imgs/$b"
    for k in 1 2; do n=$((n + 1)); echo "{\"image\": \"imgs/$b\", \"caption\": \"picture $n shows a scene with $k things in it\"}" >> data/rows.jsonl; done
  done
  for x in 10 50 90 100; do
    printf '[recipe]\nextends = all_layers_top%s\n[calib]\nsamples = 24\nmax_len = 256\n[sensitivity]\nscore_samples = 16\n' $x > vrecipes/t$x.ini
  done
  V=(--model vmodel --images data/rows.jsonl --root data --recipes-dir vrecipes --quiet)
  aqs --store vst init >/dev/null
  aqs --store vst build --no-checkout "${V[@]}" recipe t10 t50 t90 t100 >/dev/null || echo "image sweep build failed"
  for be in cpu cuda; do
    aqs --store vst eval --json --backend $be --precision f32 "${V[@]}" t10 t50 t90 t100 bf16 > "$OUT/images_$be.json"
  done
  python3 - "$OUT/images_cpu.json" "$OUT/images_cuda.json" <<'PY'
import json, sys
cpu, gpu = (json.load(open(p)) for p in sys.argv[1:3])
worst = {"ppl": 0.0, "kl_mean": 0.0}
for a, b in zip(cpu, gpu):
    assert a["name"] == b["name"] and a["n_targets"] == b["n_targets"] and a["eval_set"] == b["eval_set"] == "image+caption"
    for k in worst:
        rel = abs(a[k] - b[k]) / abs(a[k]) if a[k] else abs(b[k])
        worst[k] = max(worst[k], rel)
    print(f"{a['name']:6s} kl cpu {a['kl_mean']:.4e} cuda {b['kl_mean']:.4e}  ppl cpu {a['ppl']:.4f} cuda {b['ppl']:.4f}  top1 {a['top1']:.4f} {b['top1']:.4f}")
print("worst relative difference", json.dumps(worst), "n_targets", cpu[0]["n_targets"])
print("PASS" if worst["ppl"] < 0.01 and worst["kl_mean"] < 0.05 else "FAIL")
PY
} 2>&1 | tee "$OUT/images.txt"
rm -rf "$W"
