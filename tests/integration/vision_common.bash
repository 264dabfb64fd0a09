# tests/integration/vision_common.bash: sourced by the image tests: the tiny synthetic model with
# the vision group vis.0.gate_up planted as the outlier, and $TMP/data/rows.jsonl with two
# caption rows per fixture image (at their odd sizes, in every fixture format) under $TMP/data/imgs.
# Sets n to the number of rows and makes $TMP/recipes.
source "$(dirname "${BASH_SOURCE[0]}")/cli_common.bash"

"$AQS" synth-model --preset tiny --seed 3 --outliers vis.0.gate_up:100000 --out "$TMP/model" >/dev/null \
  || fail "synth-model"
mkdir -p "$TMP/data/imgs" "$TMP/recipes"
n=0
for f in "$AQS_SOURCE_DIR"/tests/fixtures/images/*.png "$AQS_SOURCE_DIR"/tests/fixtures/images/*.jpg; do
  b=$(basename "$f")
  cp "$f" "$TMP/data/imgs/$b"
  for k in 1 2; do
    n=$((n + 1))
    echo "{\"image\": \"imgs/$b\", \"caption\": \"picture $n shows a scene with $k things in it\"}" >>"$TMP/data/rows.jsonl"
  done
done
