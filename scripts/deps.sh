#!/usr/bin/env bash
# Installs the Debian 12 packages ocellus needs, nothing else, from Debian's archive only:
#   bash scripts/deps.sh run    building the tool and running models (scripts/run.sh)
#   bash scripts/deps.sh test   that, plus the tests' extras (scripts/test.sh): GoogleTest and Google
#                               Benchmark, clang with libFuzzer for the fuzzers, PyTorch and NumPy for
#                               the reference tests, OpenMPI for the two-process training test
set -euo pipefail
RUN=(build-essential cmake libopenblas-openmp-dev nlohmann-json3-dev libcli11-dev libicu-dev libpng-dev
     libjpeg62-turbo-dev zlib1g-dev libcpp-httplib-dev pkg-config)
TEST=(libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev libomp-14-dev python3 python3-torch
      python3-numpy libopenmpi-dev openmpi-bin chromium)
case "${1:-test}" in
  run) PKGS=("${RUN[@]}") ;;
  test) PKGS=("${RUN[@]}" "${TEST[@]}") ;;
  *) echo "usage: scripts/deps.sh run|test" >&2; exit 2 ;;
esac
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The server's tests run Node clients: Debian's nodejs and npm, unless a Node with npm is there
# already (NodeSource's nodejs bundles npm and conflicts with Debian's npm package).
if [ "${1:-test}" = test ] && ! { command -v node && command -v npm; } >/dev/null; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  # Without Recommends: they add desktop libraries (Qt, GTK, codecs) none of this uses.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
