#!/usr/bin/env bash
# The checks that need a GPU, in one run from the repository's root (CI has no GPU and never runs this):
#
#   bash benchmarks/gpu_check.sh [conformance|bench|all] [OUT_DIR] [python -m benchmarks options ...]
#
# conformance: the conformance suite with PyTorch's tensors on CUDA (CBLOSS_TEST_DEVICE=cuda) and JAX on its
#   default device (the GPU, for a CUDA build of jaxlib), against the same float64 oracle as on the CPU;
# bench: `python -m benchmarks --device cuda` for PyTorch and JAX, its JSON and markdown report in OUT_DIR (turn
#   them into docs/benchmarks.md with `python -m benchmarks.report`); further options go to it, for example
#   `--section speed --section memory` to leave out the compile section's compilations.
# all (the default): both. Each log is written to OUT_DIR (default gpu-check-output). It needs python3 with the
# test dependencies (NumPy, array-api-compat, mpmath, pytest, pytest-xdist) and a CUDA build of PyTorch; a JAX
# that is not installed, or sees no GPU, is left out (said in the log), PyTorch without CUDA is an error.
set -uo pipefail

step="${1:-all}"
out="${2:-gpu-check-output}"
shift $(($# > 2 ? 2 : $#))
case "$step" in
conformance | bench | all) ;;
*)
    echo "usage: bash benchmarks/gpu_check.sh [conformance|bench|all] [OUT_DIR] [benchmark options ...]" >&2
    exit 2
    ;;
esac
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Each pytest worker is a JAX client: without this each would take most of the GPU's memory at its start.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python3 -c "import torch; assert torch.cuda.is_available(), 'PyTorch sees no CUDA device'" || exit 2
frameworks=(torch)
if python3 -c "import jax; assert jax.default_backend() == 'gpu'" 2>/dev/null; then
    frameworks+=(jax)
else
    echo "gpu_check: JAX is not installed or sees no GPU: left out" | tee "$out/jax-left-out.txt"
fi
workers=$(($(nproc) > 8 ? 8 : $(nproc)))
status=0

if [[ "$step" != bench ]]; then
    for framework in "${frameworks[@]}"; do
        CBLOSS_TEST_DEVICE=cuda CBLOSS_TEST_BACKEND="$framework" python3 -m pytest -q -p no:cacheprovider \
            -n "$workers" tests/test_conformance.py 2>&1 | tee "$out/conformance-$framework.txt" || status=1
    done
fi
if [[ "$step" != conformance ]]; then
    python3 -m benchmarks --device cuda "${frameworks[@]/#/--framework=}" --out "$out" --markdown "$out/benchmarks.md" "$@" \
        2>&1 | tee "$out/benchmarks.txt" || status=1
fi
exit "$status"
