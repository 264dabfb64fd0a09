#!/usr/bin/env bash
# scripts/install-deps.sh: installs aqs's build and test dependencies on a Debian machine (apt-get).
# Skips apt entirely when every package is already present. Run as root or with sudo available.
set -euo pipefail
pkgs=(build-essential cmake pkg-config git
      liblmdb-dev libzstd-dev libssl-dev libjansson-dev libinih-dev libpcre2-dev libutf8proc-dev
      libpng-dev libjpeg62-turbo-dev libopenblas-dev libcurl4-openssl-dev libcmocka-dev
      python3 zstd jq nginx-light  # nginx: tests/integration/share_remote.sh
      clang libclang-rt-14-dev)  # tests/fuzz: libFuzzer harnesses (clang -fsanitize=fuzzer)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "install-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
