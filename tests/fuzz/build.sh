#!/bin/bash
# tests/fuzz/build.sh: builds the libFuzzer harnesses with clang (-fsanitize=fuzzer,address,undefined)
# into OUT_DIR (default build-fuzz/) and assembles each one's seed corpus in OUT_DIR/corpus_NAME
# (from tests/fixtures, recipes/, .aqstore.example and tests/fuzz/corpus). tests/fuzz/run.sh runs
# them (CI: 30 s each); one by hand:
#   build-fuzz/fuzz_png build-fuzz/corpus_png -max_total_time=120 -rss_limit_mb=2048
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT_DIR:-$SRC/build-fuzz}
TARGETS="png jpeg calib_chunk safetensors config tokenizer recipe aqstore remote_response"
mkdir -p "$OUT/gen/common"
for t in $TARGETS; do rm -rf "$OUT/corpus_$t"; mkdir -p "$OUT/corpus_$t"; done
printf '#define AQS_VERSION "fuzz"\n' > "$OUT/gen/common/version.h"
cmake -DOUT="$OUT/gen/builtin_recipes.c" -DDIR="$SRC/recipes" -P "$SRC/cmake/embed_recipes.cmake"
CFLAGS="-std=c11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$SRC -I$OUT/gen"
CFLAGS="$CFLAGS $(pkg-config --cflags jansson libpcre2-8 inih)"
COMMON="$SRC/common/err.c $SRC/common/file.c"
IMG="$SRC/engine/image/image.c $SRC/engine/image/png.c $SRC/engine/image/jpeg.c"
build() { # NAME SOURCES... -- LIBS
  local name=$1; shift
  clang $CFLAGS -o "$OUT/fuzz_$name" "$SRC/tests/fuzz/fuzz_$name.c" "$@" &
}
build png $IMG $COMMON $(pkg-config --libs libpng libjpeg)
build jpeg $IMG $COMMON $(pkg-config --libs libpng libjpeg)
build calib_chunk $COMMON "$SRC/engine/calib/calibset.c" "$SRC/store/canon_json.c" "$SRC/store/digest.c" \
  $(pkg-config --libs jansson libcrypto)
wait
build safetensors $COMMON "$SRC/engine/model/safetensors_read.c" "$SRC/engine/model/dtype.c" $(pkg-config --libs jansson)
build config $COMMON "$SRC/engine/model/qwen_config.c" $(pkg-config --libs jansson) -lm
wait
build tokenizer $COMMON "$SRC"/engine/tokenizer/*.c $(pkg-config --libs jansson libpcre2-8 libutf8proc)
# Recipes take only the method names from sensitivity.c: it is compiled apart (no coverage
# instrumentation, one section per function) so --gc-sections drops the compute code it also
# holds, whose callees are not linked in.
clang -std=c11 -g -O1 -D_GNU_SOURCE -fsanitize=address,undefined -ffunction-sections -fdata-sections \
  -I"$SRC" -I"$OUT/gen" -c "$SRC/engine/compute/sensitivity.c" -o "$OUT/gen/sensitivity.o"
build recipe $COMMON "$SRC/common/ini_text.c" "$SRC"/engine/stages/recipe*.c "$OUT/gen/builtin_recipes.c" \
  "$OUT/gen/sensitivity.o" -Wl,--gc-sections $(pkg-config --libs inih jansson) -lm
wait
build aqstore $COMMON "$SRC/common/ini_text.c" "$SRC/common/workspace.c" "$SRC/common/path.c" $(pkg-config --libs inih)
build remote_response $COMMON "$SRC/store/remote_response.c" "$SRC/store/digest.c" $(pkg-config --libs jansson libcrypto)
wait
for t in $TARGETS; do [ -x "$OUT/fuzz_$t" ] || { echo "tests/fuzz/build.sh: fuzz_$t did not build" >&2; exit 1; }; done

# Seed corpora: real files of each kind, small enough for fast runs.
cp "$SRC"/tests/fixtures/images/*.png "$OUT/corpus_png/"
cp "$SRC"/tests/fixtures/images/*.jpg "$OUT/corpus_jpeg/"
cp "$SRC"/tests/fixtures/safetensors/dtypes.safetensors "$SRC"/tests/fixtures/safetensors/sharded/*.safetensors \
  "$OUT/corpus_safetensors/"
cp "$SRC"/recipes/*.ini "$OUT/corpus_recipe/"
cp "$SRC/.aqstore.example" "$OUT/corpus_aqstore/"
for t in calib_chunk safetensors config tokenizer recipe aqstore remote_response; do
  [ -d "$SRC/tests/fuzz/corpus/$t" ] && cp "$SRC/tests/fuzz/corpus/$t"/* "$OUT/corpus_$t/"
done
echo "built: $(for t in $TARGETS; do printf '%s ' "$OUT/fuzz_$t"; done)"
