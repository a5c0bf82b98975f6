#!/usr/bin/env bash
# Optional: build the inplace-abn CUDA/C++ extension against the venv's torch (about 70 s on 2 cores).
# The project works without it (the pure-PyTorch ABN backend is exact); with it, InPlace-ABN kernels run on CUDA and
# the backend-equivalence tests run. --if-possible: skip quietly when there is no CUDA toolkit or the build fails.
set -uo pipefail
PY=${PY:-.venv/bin/python}
if_possible=0
[ "${1:-}" = "--if-possible" ] && if_possible=1

if $PY -c "import inplace_abn" 2>/dev/null; then
  echo "inplace-abn already installed"; exit 0
fi
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  echo "inplace-abn: no CUDA toolkit at $CUDA_HOME (nvcc); using the pure-PyTorch ABN backend"
  [ $if_possible -eq 1 ] && exit 0 || exit 1
fi
echo "building inplace-abn==1.1.0 against $($PY -c 'import torch; print(torch.__version__)') ..."
$PY -m pip install --quiet setuptools_scm ninja wheel
if TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}" MAX_JOBS=${MAX_JOBS:-2} \
   $PY -m pip install --quiet --no-cache-dir --no-build-isolation inplace-abn==1.1.0 \
   && $PY -c "import inplace_abn"; then
  echo "inplace-abn installed"
else
  echo "inplace-abn: build failed; the pure-PyTorch ABN backend will be used"
  [ $if_possible -eq 1 ] && exit 0 || exit 1
fi
