#!/usr/bin/env bash
# scripts/setup.sh: the README's first command: install dependencies, build aqs, run the main job.
# Same build type as scripts/test.sh, so running both builds build/ once.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAQS_CUDA="${AQS_CUDA:-AUTO}" >/dev/null
cmake --build build -j"$(nproc)"
scripts/main-job.sh build/aqs
