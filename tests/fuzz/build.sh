#!/bin/bash
# tests/fuzz/build.sh: builds the libFuzzer harnesses with clang (-fsanitize=fuzzer,address,undefined)
# into OUT_DIR (default build-fuzz/) and seeds corpora from tests/fixtures/images. Not part of the
# normal build or CI. Run one with e.g.:
#   build-fuzz/fuzz_png build-fuzz/corpus_png -max_total_time=120 -rss_limit_mb=2048
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT_DIR:-$SRC/build-fuzz}
mkdir -p "$OUT/gen/common" "$OUT/corpus_png" "$OUT/corpus_jpeg" "$OUT/corpus_chunk"
printf '#define AQS_VERSION "fuzz"\n' > "$OUT/gen/common/version.h"
CFLAGS="-std=c11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$SRC -I$OUT/gen"
IMG="$SRC/common/err.c $SRC/engine/image/image.c $SRC/engine/image/png.c $SRC/engine/image/jpeg.c"
LIBS="$(pkg-config --libs libpng libjpeg)"
clang $CFLAGS -o "$OUT/fuzz_png" "$SRC/tests/fuzz/fuzz_png.c" $IMG $LIBS
clang $CFLAGS -o "$OUT/fuzz_jpeg" "$SRC/tests/fuzz/fuzz_jpeg.c" $IMG $LIBS
clang $CFLAGS $(pkg-config --cflags jansson) -o "$OUT/fuzz_calib_chunk" "$SRC/tests/fuzz/fuzz_calib_chunk.c" \
  "$SRC/common/err.c" "$SRC/engine/calib/calibset.c" "$SRC/store/canon_json.c" "$SRC/store/digest.c" \
  $(pkg-config --libs jansson libcrypto)
clang $CFLAGS $(pkg-config --cflags jansson) -o "$OUT/fuzz_remote_response" "$SRC/tests/fuzz/fuzz_remote_response.c" \
  "$SRC/common/err.c" "$SRC/common/file.c" "$SRC/store/remote_response.c" "$SRC/store/digest.c" \
  $(pkg-config --libs jansson libcrypto)
mkdir -p "$OUT/corpus_remote_response"
cp "$SRC"/tests/fuzz/corpus/remote_response/* "$OUT/corpus_remote_response/"
cp "$SRC"/tests/fixtures/images/*.png "$OUT/corpus_png/"
cp "$SRC"/tests/fixtures/images/*.jpg "$OUT/corpus_jpeg/"
echo "built $OUT/fuzz_png $OUT/fuzz_jpeg $OUT/fuzz_calib_chunk $OUT/fuzz_remote_response"
