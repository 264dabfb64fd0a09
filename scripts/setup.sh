#!/usr/bin/env bash
# scripts/setup.sh: the README's first command: install dependencies, build aqs, run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DAQS_CUDA="${AQS_CUDA:-AUTO}" >/dev/null
cmake --build build -j"$(nproc)"
scripts/main-job.sh build/aqs
