#!/bin/bash
# tests/bench/io_bench.sh AQS WORKDIR [BACKEND]: the build's IO next to the standard tools, on one
# disk (WORKDIR holds the model, the stores and every copy):
#   hashing   `aqs plan` on a cold store (file digests only: page cache cold, then warm), the
#             source stage of a cold build (AQS_SOURCE_TIMING: files pass, tensors pass), `aqs plan`
#             on the built store (stat-cache), and sha256sum of the largest file (one stream);
#   export    the export stage of that cold build (store writes, fsync'd) against dd copying the
#             same number of bytes from the model files into the store's directory (conv=fsync);
#   checkout  `aqs checkout` against `cp -r` of the checkout it wrote, page cache cold and warm.
# "cold" = the files' pages dropped with `dd iflag=nocache count=0` (no root needed; fincore shows
# what stayed when present). Environment: MODEL=DIR (an existing checkpoint; else a synthetic one
# of PRESET, default small), RECIPE (top50), RECIPES_DIR, SAMPLES (the recipe's calib samples if
# unset), STORE=DIR (a store where RECIPE is built already: no cold build, so no export vs dd).
# Prints one line per measurement and a JSON summary on the last line.
set -euo pipefail
AQS=$(realpath "$1"); W=$(realpath -m "$2"); BACKEND=${3:-cpu}
mkdir -p "$W"
export AQS_PROGRESS=never
RECIPE=${RECIPE:-top50}
TIMEFORMAT='%R %U %S'
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.3f", b-a}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}'; }
gbps() { awk -v n="$1" -v s="$2" 'BEGIN{printf "%.2f", (s > 0 ? n / s / 1e9 : 0)}'; }
drop() { find "$@" -type f -exec dd if={} iflag=nocache count=0 status=none \; ; }
cached() { command -v fincore >/dev/null && fincore -b -n -o RES,SIZE "$@" 2>/dev/null | awk '{r+=$1; s+=$2} END{printf "%.0f%% of %.0f bytes in page cache", (s ? 100*r/s : 0), s}' || echo "fincore missing"; }

if [ -n "${MODEL:-}" ]; then
  M=$(realpath "$MODEL")
else
  M=$W/model
  [ -f "$M/config.json" ] || "$AQS" synth-model --preset "${PRESET:-small}" --seed 1 --out "$M" >/dev/null
fi
python3 - "$W/captions.txt" <<'PY'
import random, sys
random.seed(5)
words = "a man woman dog cat sitting on the beach with red small old large white near two people in background tree".split()
with open(sys.argv[1], "w") as f:
    for _ in range(600):
        f.write(" ".join(random.choice(words) for _ in range(random.randint(8, 20))) + ".\n")
PY
model_bytes=$(du -cb "$M"/*.safetensors | tail -1 | cut -f1)
largest=$(ls -S "$M"/*.safetensors | head -1)
largest_bytes=$(stat -c %s "$largest")
nfiles=$(ls "$M"/*.safetensors | wc -l)
echo "model: $M, $nfiles safetensors files, $model_bytes bytes (largest $largest_bytes); $(nproc) cores; disk: $(df -h --output=source,fstype "$W" | tail -1)"
ARGS=(--model "$M" --captions "$W/captions.txt" --backend "$BACKEND" --quiet)
[ -n "${SAMPLES:-}" ] && ARGS+=(--samples "$SAMPLES")
[ -n "${RECIPES_DIR:-}" ] && ARGS+=(--recipes-dir "$RECIPES_DIR")

# ---- hashing the source ----
rm -rf "$W/h" && "$AQS" --store "$W/h" init >/dev/null
drop "$M"
echo "page cache before the cold plan: $(cached "$M"/*.safetensors)"
read -r plan_cold plan_cold_user plan_cold_sys < <( { time AQS_SOURCE_TIMING=1 "$AQS" --store "$W/h" plan "${ARGS[@]}" recipe "$RECIPE" >/dev/null 2>"$W/plan_cold.err"; } 2>&1 )
grep '^source:' "$W/plan_cold.err" || true
echo "hash, cold store, page cache cold: ${plan_cold}s wall (user ${plan_cold_user}s, sys ${plan_cold_sys}s) = $(gbps "$model_bytes" "$plan_cold") GB/s"
read -r plan_warm plan_warm_user plan_warm_sys < <( { time AQS_SOURCE_TIMING=1 "$AQS" --store "$W/h" plan "${ARGS[@]}" recipe "$RECIPE" >/dev/null 2>"$W/plan_warm.err"; } 2>&1 )
grep '^source:' "$W/plan_warm.err" || true
echo "hash, cold store, page cache warm: ${plan_warm}s wall (user ${plan_warm_user}s, sys ${plan_warm_sys}s) = $(gbps "$model_bytes" "$plan_warm") GB/s, $(gbps "$model_bytes" "$(awk -v u="$plan_warm_user" -v s="$plan_warm_sys" 'BEGIN{print u+s}')") GB/s per busy core"
t=$(now); sha256sum "$largest" >/dev/null; sha_s=$(since "$t")
echo "sha256sum of the largest file (page cache warm): ${sha_s}s = $(gbps "$largest_bytes" "$sha_s") GB/s (one stream: the floor of a file digest)"

# ---- a cold build: the source stage's two passes and the export ----
S=${STORE:-$W/s}
source_s=null; export_s=null
if [ -z "${STORE:-}" ]; then
  rm -rf "$S" && "$AQS" --store "$S" init >/dev/null
  AQS_SOURCE_TIMING=1 AQS_EXPORT_TIMING=1 "$AQS" --store "$S" build --json --no-checkout "${ARGS[@]}" recipe "$RECIPE" \
    >"$W/build.json" 2>"$W/build.err"
  grep -E '^(source|export)' "$W/build.err" || true
  stage_s() { jq -r --arg s "$1" '.[0].stages[] | select(.stage == $s) | .seconds' "$W/build.json"; }
  source_s=$(stage_s source); export_s=$(stage_s export)
  echo "cold build: source stage ${source_s}s, export stage ${export_s}s"
fi
t=$(now); AQS_SOURCE_TIMING=1 "$AQS" --store "$S" plan "${ARGS[@]}" recipe "$RECIPE" >/dev/null 2>"$W/plan_statcache.err"; plan_stat=$(since "$t")
echo "hash, warm store (stat-cache): plan ${plan_stat}s wall in all"

# ---- checkout vs cp (the checkout also gives the checkpoint's bytes for dd) ----
rm -rf "$W/ck1" "$W/ck2" "$W/cp1" "$W/cp2"
drop "$S/objects"
t=$(now); "$AQS" --store "$S" checkout "$RECIPE" "$W/ck1" >/dev/null; co_cold=$(since "$t")
ckpt_bytes=$(du -sb "$W/ck1" | cut -f1)
t=$(now); "$AQS" --store "$S" checkout "$RECIPE" "$W/ck2" >/dev/null; co_warm=$(since "$t")
drop "$W/ck1"
t=$(now); cp -r "$W/ck1" "$W/cp1"; sync -f "$W/cp1"; cp_cold=$(since "$t")
t=$(now); cp -r "$W/ck1" "$W/cp2"; sync -f "$W/cp2"; cp_warm=$(since "$t")
echo "checkout $RECIPE ($ckpt_bytes bytes): page cache cold ${co_cold}s, warm ${co_warm}s"
echo "cp -r of that checkout + sync: cold ${cp_cold}s, warm ${cp_warm}s"
echo "checkout speed / cp speed: cold $(ratio "$cp_cold" "$co_cold"), warm $(ratio "$cp_warm" "$co_warm") (target >= 0.80)"

# ---- export vs dd: the same bytes from the model files into the store's directory ----
# (the cold build read the model just before its export, so the source was in the page cache: so is dd's)
dd_s=null
if [ -z "${STORE:-}" ]; then
t=$(now)
{ cat "$M"/*.safetensors || true; } | head -c "$ckpt_bytes" | dd of="$S/tmp/dd.bin" bs=16M iflag=fullblock conv=fsync status=none
dd_s=$(since "$t"); rm -f "$S/tmp/dd.bin"
echo "export stage: $ckpt_bytes bytes in ${export_s}s = $(gbps "$ckpt_bytes" "$export_s") GB/s; dd (page cache warm, conv=fsync): ${dd_s}s = $(gbps "$ckpt_bytes" "$dd_s") GB/s"
echo "export speed / dd speed: $(ratio "$dd_s" "$export_s") (target >= 0.80)"
fi
printf '{"model_bytes": %s, "largest_file_bytes": %s, "plan_cold_cache_s": %s, "plan_warm_cache_s": %s, "plan_statcache_s": %s, "sha256sum_largest_s": %s, "source_stage_s": %s, "export_s": %s, "dd_s": %s, "ckpt_bytes": %s, "checkout_cold_s": %s, "checkout_warm_s": %s, "cp_cold_s": %s, "cp_warm_s": %s}\n' \
  "$model_bytes" "$largest_bytes" "$plan_cold" "$plan_warm" "$plan_stat" "$sha_s" "$source_s" "$export_s" "$dd_s" \
  "$ckpt_bytes" "$co_cold" "$co_warm" "$cp_cold" "$cp_warm"
