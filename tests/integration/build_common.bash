# tests/integration/build_common.bash: sourced by the build_*.sh tests: a tiny synthetic model
# with two planted outlier groups, a caption file, a store, and a workspace recipes directory
# with small sample counts (fast*) so the whole pipeline runs in seconds on the CPU.
source "$(dirname "${BASH_SOURCE[0]}")/cli_common.bash"

PLANTED="lm.1.down lm.2.qkv"
"$AQS" synth-model --preset tiny --seed 3 --outliers lm.1.down:100000,lm.2.qkv:100000 --out "$TMP/model" >/dev/null \
  || fail "synth-model"
python3 - "$TMP/captions.txt" <<'PY'
import random, sys
random.seed(5)
subj = ["man", "woman", "dog", "cat", "bus", "child", "bird", "horse"]
act = ["sitting on", "next to", "riding", "looking at", "holding", "walking along"]
obj = ["a bench", "the beach", "a street", "a field", "a table", "the snow"]
with open(sys.argv[1], "w") as f:
    for _ in range(200):
        f.write(f"A {random.choice(subj)} {random.choice(act)} {random.choice(obj)}.\n")
PY
mkdir -p "$TMP/recipes"
cat > "$TMP/recipes/fast.ini" <<'INI'
[recipe]
extends = lm_only
description = small sample counts for tests
[calib]
samples = 32
max_len = 64
chunk_sequences = 8
[sensitivity]
score_samples = 16
INI
for x in 10 20 30 40 50 60 70 80 90 100; do
  printf '[recipe]\nextends = fast\n[slice]\ncoverage = %s\n' "$(awk "BEGIN{print $x/100}")" > "$TMP/recipes/fast$x.ini"
done
"$AQS" --store "$TMP/store" init >/dev/null || fail "init"
B=("$AQS" --store "$TMP/store")
BUILD_ARGS=(--model "$TMP/model" --captions "$TMP/captions.txt" --recipes-dir "$TMP/recipes" --quiet)

# stage_states JSON RECIPE: "source=HIT calib-set=RUN ..." for one recipe of a build/plan report.
stage_states() {
  echo "$1" | jq -r --arg r "$2" '.[] | select(.recipe == $r) | [.stages[] | "\(.stage)=\(.state)"] | join(" ")'
}
# store_stat FIELD: a number from aqs stats --json.
store_stat() { "${B[@]}" stats --json | jq -r ".$1"; }
