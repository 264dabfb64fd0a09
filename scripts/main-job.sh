#!/usr/bin/env bash
# scripts/main-job.sh [AQS]: the main job run by setup.sh: `aqs demo` (README), which builds the
# top10 ... top100 sweep of a tiny synthetic model in ./aqs-demo and proves top10 vs top50.
set -euo pipefail
aqs="$(realpath "${1:-build/aqs}")"
exec "$aqs" demo
