#!/usr/bin/env bash
# scripts/device-pack.sh [BUILD_DIR] [CARRY_DIR]: builds aqs with the CUDA backend here and packs what
# the GPU machine (Ubuntu 24.04, no liblmdb/libinih/... ) needs to run it into a git-ignored carry folder:
# bin/ (aqs, its CUDA module libaqs_cuda.so, gpu tests, benchmarks), lib/ (.so files that machine lacks),
# run-gpu-tests.sh, env.sh.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$src/build-cuda}"
carry="${2:-$src/.devcarry-cuda}"
jobs="${AQS_PACK_JOBS:-2}"

cmake -S "$src" -B "$build" -DAQS_CUDA=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=(aqs)
# gpu tests and benchmarks are named after their source files (tests/CMakeLists.txt)
for f in "$src"/tests/gpu/test_*.c; do [ -e "$f" ] && targets+=("gpu_$(basename "$f" .c)"); done
targets+=(compute_bench attention_bench bf16_ops_bench)  # the benchmarks this pack exists for (others build their own)
cmake --build "$build" -j"$jobs" --target "${targets[@]}" aqs_cuda

rm -rf "$carry"
mkdir -p "$carry/bin" "$carry/lib" "$carry/lib-fallback"
for t in "${targets[@]}"; do
  exe=$(find "$build" -maxdepth 3 -type f -name "$t" -perm -u+x | head -1)
  [ -n "$exe" ] || { echo "device-pack: built target $t not found under $build" >&2; exit 1; }
  cp "$exe" "$carry/bin/"
  strip --strip-debug "$carry/bin/$t" 2>/dev/null || true
done
# The CUDA backend module: next to aqs (where it looks for it) and on the tests' library path.
cp "$build/libaqs_cuda.so" "$carry/bin/"
strip --strip-debug "$carry/bin/libaqs_cuda.so" 2>/dev/null || true

# Shared libraries. Known absent on the device image -> lib/ (always first on LD_LIBRARY_PATH);
# everything else that is not glibc/CUDA -> lib-fallback/, linked into lib/ there only when that
# machine's ldconfig does not know the soname (so its own copies win where they exist).
always_re='liblmdb|libinih|libINIReader|libutf8proc|libcmocka|libjpeg\.so\.62'
skip_re='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|librt\.so|libpthread\.so|libcuda\.so|libcudart|libcublas|libnvidia|libaqs_cuda)'
for exe in "$carry"/bin/*; do
  ldd "$exe" | awk '/=> \// {print $1, $3}'
done | sort -u | while read -r soname path; do
  [[ "$soname" =~ $skip_re ]] && continue
  if [[ "$soname" =~ $always_re ]]; then
    cp -L "$path" "$carry/lib/$soname"
  else
    cp -L "$path" "$carry/lib-fallback/$soname"
  fi
done

# OpenBLAS is opened by kernels/cpu/blas.c (dlopen), so ldd does not list it: carry it too.
blas=$(ldconfig -p | awk '$1 == "libopenblas.so.0" && !found {print $NF; found = 1}')  # no early exit: SIGPIPE + pipefail
[ -n "$blas" ] || { echo "device-pack: libopenblas.so.0 not found (ldconfig -p)" >&2; exit 1; }
cp -L "$blas" "$carry/lib-fallback/libopenblas.so.0"
for dep in $(ldd "$blas" | awk '/=> \// {print $1 "=" $3}'); do
  so=${dep%%=*}
  [[ "$so" =~ $skip_re ]] || [ -e "$carry/lib-fallback/$so" ] || cp -L "${dep#*=}" "$carry/lib-fallback/$so"
done

# Large fallbacks travel gzip'd (the carry folder and the tree share a 64 MiB limit).
for f in "$carry"/lib-fallback/*; do
  if [ "$(stat -c %s "$f")" -gt 4000000 ]; then gzip -9 "$f"; fi
done

# The CUDA module (three architectures) travels gzip'd too; env.sh unpacks it.
gzip -9 "$carry/bin/libaqs_cuda.so"

cat >"$carry/env.sh" <<'EOF'
# source .devcarry-cuda/env.sh on the GPU machine: library path for the carried binaries.
carry="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[ -e "$carry/bin/libaqs_cuda.so" ] || gzip -dc "$carry/bin/libaqs_cuda.so.gz" >"$carry/bin/libaqs_cuda.so"
for f in "$carry"/lib-fallback/*; do
  so=$(basename "$f" .gz)
  ldconfig -p | grep -q "^[[:space:]]*$so " && continue
  case "$f" in
    *.gz) gzip -dc "$f" >"$carry/lib/$so" ;;
    *) ln -sf "$f" "$carry/lib/$so" ;;
  esac
done
cudalib=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -e "$d/libcublasLt.so.13" ] && cudalib="$d" && break
done
if [ -z "$cudalib" ]; then
  lt=$(find / -name 'libcublasLt.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
  [ -n "$lt" ] && cudalib="$(dirname "$lt")"
  rt=$(find / -name 'libcudart.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
  [ -n "$rt" ] && cudalib="$cudalib:$(dirname "$rt")"
fi
export LD_LIBRARY_PATH="$carry/lib:$carry/bin:${cudalib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$carry/bin:$PATH"
export AQS_BIN="$carry/bin/aqs"
missing=$(for b in "$carry"/bin/*; do [ -x "$b" ] || continue; ldd "$b" | grep 'not found'; done | sort -u)
[ -z "$missing" ] || { echo "env.sh: still missing:"; echo "$missing"; }
EOF

cat >"$carry/run-gpu-tests.sh" <<'EOF'
#!/usr/bin/env bash
# run-gpu-tests.sh [SOURCE_DIR]: runs every carried gpu_test_* (exit 77 = skip); exit 1 if any fails.
carry="$(cd "$(dirname "$0")" && pwd)"
. "$carry/env.sh"
export AQS_SOURCE_DIR="${1:-$(cd "$carry/.." && pwd)}" AQS_SHARED_DIR="$carry/shared" AQS_STORE=
pass=0; fail=0; skip=0
for t in "$carry"/bin/gpu_test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  start=$(date +%s.%N)
  "$t" >"/tmp/$name.log" 2>&1; rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  case $rc in
    0) pass=$((pass+1)); echo "PASS $name (${secs}s)";;
    77) skip=$((skip+1)); echo "SKIP $name";;
    *) fail=$((fail+1)); echo "FAIL $name (rc $rc)";;
  esac
  grep -v '^\[ *\(RUN\|OK\) *\]' "/tmp/$name.log" | sed 's/^/    /'
done
echo "gpu tests: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
EOF
chmod +x "$carry/run-gpu-tests.sh"

size=$(du -sm "$carry" | cut -f1)
echo "device-pack: $carry: ${size} MiB ($(ls "$carry/bin" | wc -l) executables and modules, $(ls "$carry/lib" "$carry/lib-fallback" | wc -l) libraries)"
if [ "$size" -ge 60 ]; then echo "device-pack: carry folder over 60 MiB" >&2; exit 1; fi
