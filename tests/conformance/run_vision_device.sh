#!/usr/bin/env bash
# tests/conformance/run_vision_device.sh CARRY: the vision helper's run on the GPU machine, from a
# carry folder made by scripts/device-pack.sh plus vlm_dump, vlm_bench, this script,
# vision_conformance.py, hf_reference.py, image_bench.py and torch_peer.py copied into it.
#  1. gpu_test_linear and gpu_test_vision_ops (the FP8 GEMM on odd shapes, the tower in BF16 with
#     every linear FP8, against the CPU twins);
#  2. vision_conformance.py on the small synthetic model (amax with torch's TF32 defaults and off);
#  3. an all_layers sweep (top10/50/90) on the 3b synthetic model built with --backend cuda over the
#     fixture images: the family check;
#  4. image_bench.py on the same 3b model: calibration and scoring throughput, aqs and torch.
# Writes into $OUT: gpu_tests.txt, vision_conformance.json, sweep_3b.txt, image_bench.json, log.
# STEPS (default "tests conformance sweep bench") picks steps; OLD=DIR (vlm_bench, gpu_test_vision_ops
# and libaqs_cuda.so of another build, e.g. before a kernel change) adds that build's tower test and
# a bench side "aqs bf16 (OLD)".
set -uo pipefail
carry="$(cd "$1" && pwd)"
src="$(pwd)"
OLD=${OLD:+$(cd "$OLD" && pwd)}  # before the cd below: OLD may be relative
. "$carry/env.sh"
W=$(mktemp -d /tmp/aqs-vision-XXXXXX)
cd "$W"
export AQS_PROGRESS=never PYTHONUNBUFFERED=1
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
# the 3b model is written while the GPU tests run
(aqs synth-model --preset 3b --threads 12 --out m3b >/dev/null 2>synth.err; echo $? >synth.rc) &
synth=$!
STEPS=${STEPS:-tests conformance sweep bench}
has() { [[ " $STEPS " == *" $1 "* ]]; }
if has tests; then
  for t in gpu_test_linear gpu_test_vision_ops; do
    "$carry/bin/$t" >>"$OUT/gpu_tests.txt" 2>&1; echo "$t rc=$?" | tee -a "$OUT/gpu_tests.txt"
  done
fi
if [ -n "$OLD" ]; then
  LD_LIBRARY_PATH="$OLD:$LD_LIBRARY_PATH" "$OLD/gpu_test_vision_ops" >"$OUT/gpu_tests_old.txt" 2>&1
  echo "gpu_test_vision_ops ($OLD) rc=$?"
  grep -E "vision tower|ERROR|FAIL" "$OUT/gpu_tests_old.txt"
fi
has conformance && python3 "$carry/vision_conformance.py" "$carry/bin/aqs" "$carry/bin/vlm_dump" "$W/conf" \
  --json "$OUT/vision_conformance.json" >"$W/conf.log" 2>&1 || { echo "vision_conformance failed"; tail -20 "$W/conf.log"; }
has conformance && grep -E "^amax|^f32|^bf16|^scores|^positions|^vlm_dump" "$W/conf.log" | cut -c1-400
wait "$synth"
echo "synth 3b rc=$(cat synth.rc)"
has sweep && {
  mkdir -p data/imgs recipes
  n=0
  for f in "$src"/tests/fixtures/images/*.png "$src"/tests/fixtures/images/*.jpg; do
    b=$(basename "$f"); cp "$f" data/imgs/
    for k in 1 2 3 4; do
      n=$((n + 1))
      echo "{\"image\": \"imgs/$b\", \"caption\": \"picture $n shows a scene with $k things in it\"}" >>data/rows.jsonl
    done
  done
  echo "$n image rows"
  for x in 10 50 90; do
    printf '[recipe]\nextends = all_layers_top%s\n[calib]\nsamples = 32\nmax_len = 256\n[sensitivity]\nscore_samples = 16\n' $x >recipes/al$x.ini
  done
  aqs --store st init >/dev/null
  t0=$(now)
  aqs --store st build --no-checkout --backend cuda --model m3b --images data/rows.jsonl --root data \
    --recipes-dir recipes recipe al10 al50 al90 2>&1
  echo "build rc=$?, $(secs "$t0" "$(now)") s wall"
} 2>&1 | tee "$OUT/sweep_3b.txt"
sides=(--side "aqs f32,$carry/bin/vlm_bench,f32" --side "aqs bf16,$carry/bin/vlm_bench,bf16")
[ -n "$OLD" ] && sides+=(--side "aqs bf16 (OLD),$OLD/vlm_bench,bf16")
has bench && { python3 "$carry/image_bench.py" "$carry/bin/aqs" "$carry/bin/vlm_bench" "$W/bench" --model m3b \
  --images 8 --warmup 1 --steps 3 "${sides[@]}" --json "$OUT/image_bench.json" >"$W/bench.log" 2>&1 \
  || echo "image_bench failed"; grep -vE '^\s|^[{}]' "$W/bench.log" | tail -12; }
rm -rf "$W"
