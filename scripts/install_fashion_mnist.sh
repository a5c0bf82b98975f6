#!/usr/bin/env bash
# Fashion-MNIST from Debian's package dataset-fashion-mnist (the source of the embedded demo data).
set -euo pipefail
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Fashion-MNIST is missing: run 'sudo apt-get install -y dataset-fashion-mnist' (files go to $dir)." >&2
  exit 1
fi
echo "installing dataset-fashion-mnist (Debian package) ..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
test -f "$dir/train-images-idx3-ubyte.gz"
