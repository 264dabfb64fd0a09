#!/usr/bin/env bash
# scripts/test.sh: the README's second command: install dependencies, build, run the whole test
# suite with ctest (GPU tests are skipped where no GPU is present). Extra args go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build="${AQS_BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAQS_CUDA="${AQS_CUDA:-AUTO}" >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
