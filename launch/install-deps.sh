#!/usr/bin/env bash
# Installs the Debian 12 packages baton builds and tests with. Idempotent:
# only missing packages are installed, so a second run costs one dpkg query.
# Used by `make demo` and `make test`; safe to run by hand.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libopenblas-dev libomp-dev
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libzstd-dev libxxhash-dev libcjson-dev libinih-dev libutf8proc-dev
  libsndfile1-dev libfftw3-dev espeak-ng sox
  libprotobuf-c-dev protobuf-c-compiler
  python3 python3-numpy python3-h5py python3-torch python3-venv python3-pip
  clang libclang-rt-14-dev
  gnuplot-nox tmux
  iproute2 nftables iptables libnetfilter-queue-dev
)
# gnuplot-nox draws `baton report`; tmux drives the progress-bar test in a
# terminal. iproute2 (`ip netns`, veth, bridges) and nftables (packet loss)
# for the multi-node tests on one machine (tests/multinode; unshare and
# mount come from util-linux, which every Debian system has).
# libnetfilter-queue-dev builds tests/multinode/nfq_delay (a slow, lossy
# link in user space: this kernel has no netem), and iptables feeds it
# (NFQUEUE target; nftables' own `queue` needs CONFIG_NFT_QUEUE, absent
# here).

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "baton: installing missing packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
