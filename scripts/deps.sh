#!/usr/bin/env bash
# Installs the Debian 12 packages ocellus needs to build, test and benchmark. Nothing else is fetched.
set -euo pipefail
PKGS=(build-essential cmake libopenblas-openmp-dev libgtest-dev libgmock-dev libbenchmark-dev
      nlohmann-json3-dev libcli11-dev libicu-dev libpng-dev libjpeg62-turbo-dev clang libclang-rt-14-dev libomp-14-dev python3
      python3-torch python3-numpy libopenmpi-dev openmpi-bin)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
