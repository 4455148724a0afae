#!/usr/bin/env bash
# The GPU benchmarks in two parts; the figures have not been measured on a GPU yet.
# On a machine with an NVIDIA GPU, from the repository root, with `pip install -e '.[dev]'`:
#
#   OUT=gpu-figures PYTHON=python bash benchmarks/device/suite.sh throughput
#   OUT=gpu-figures PYTHON=python bash benchmarks/device/suite.sh packing
#
# `throughput`: the CUDA tests, then trainer samples/s against the DataLoader baseline in
# fp32, fp32 with attention dropout 0.1 (what the default 0 saves) and bf16 autocast, and
# whether torch.compile pays for a trial in bf16 (benchmarks/compile_payoff.py: compile
# time, cold and warm, against the step time saved), about 6 minutes on an H100 by estimate.
# `packing`: trials/hour with 1, 2, 4 and 8 workers on GPU 0 (PACK_SECONDS each, 30 by
# default, in PACK_ROUNDS rounds, 2 by default, the second in reverse order; about 5
# minutes). Logs, device.txt and JSON figures go to $OUT (default /tmp/hpo-device-out).
# PYTHON (python3), DEVICE (cuda), PACK_WORKERS (1,2,4,8) can be set.
# Without Optuna, SQLAlchemy or pydantic installed, it installs them from .whl/ (made by
# benchmarks/device/fetch_wheels.sh on a machine that can download).
# DEVICE=cpu QUICK=1 runs the same commands on a CPU at the smoke size (tests/benchmarks).
set -uo pipefail
part="${1:-}"
if [[ "$part" != throughput && "$part" != packing ]]; then
    echo "usage: suite.sh throughput|packing (not '$part')" >&2
    exit 2
fi
cd "$(dirname "$0")/../.."
out="${OUT:-${TMPDIR:-/tmp}/hpo-device-out}"
mkdir -p "$out"
python="${PYTHON:-python3}"
device="${DEVICE:-cuda}"
quick=()
[[ "${QUICK:-0}" == 1 ]] && quick=(--quick)
export PYTHONUNBUFFERED=1
if ! "$python" -c "import optuna, sqlalchemy, pydantic" 2>/dev/null; then
    if ! compgen -G ".whl/*.whl" >/dev/null; then
        echo "optuna, sqlalchemy or pydantic missing: pip install -e . here, or (offline machine) run benchmarks/device/fetch_wheels.sh on a connected one and copy .whl/ along" >&2
        exit 2
    fi
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
log="$out/$part.log"
status=0
step() { # step NAME COMMAND...: run, log, remember a failure, go on
    local name="$1"
    shift
    echo "== $name: $*" | tee -a "$log"
    "$@" 2>&1 | tee -a "$log"
    local rc="${PIPESTATUS[0]}"
    echo "== $name: exit $rc" | tee -a "$log"
    [[ "$rc" == 0 ]] || status=1
}
{ nvidia-smi || true; "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"; } >"$out/device.txt" 2>&1
case "$part" in
throughput)
    if [[ "$device" == cuda* ]]; then
        step cuda-tests "$python" -m pytest -q -p no:cacheprovider \
            tests/trainers/test_augment.py::test_cuda_device_kept_and_generator_device_checked \
            tests/trainers/test_metrics.py::test_hot_path_is_sync_free_and_stays_on_device \
            tests/trainers/test_attention.py::test_cuda_fused_kernels_match_torch_on_shared_and_repeated_keys \
            tests/trainers/test_contrastive.py::test_cuda_compiled_step_model_matches_eager_for_each_new_shape
    fi
    tp=("$python" -m benchmarks.trainer_throughput --device "$device" ${quick[@]+"${quick[@]}"})
    step fp32 "${tp[@]}" --json "$out/throughput_fp32.json"
    step fp32-attn-dropout "${tp[@]}" --attn-dropout 0.1 --workers 0 --no-input-only \
        --json "$out/throughput_fp32_attn_dropout.json"
    if [[ "$device" == cuda* ]]; then
        step bf16 "${tp[@]}" --amp bf16 --workers 0 --no-input-only --json "$out/throughput_bf16.json"
    fi
    step compile-payoff "$python" -m benchmarks.compile_payoff --device "$device" --amp bf16 \
        ${quick[@]+"${quick[@]}"} --json "$out/compile_payoff.json"
    ;;
packing)
    workers="${PACK_WORKERS:-1,2,4,8}"
    rounds=(--rounds "${PACK_ROUNDS:-2}")
    [[ -n "${quick[*]}" && -z "${PACK_ROUNDS:-}" ]] && rounds=()
    step packing "$python" -m benchmarks.trial_packing --device "$device" --workers "$workers" \
        --seconds "${PACK_SECONDS:-30}" ${rounds[@]+"${rounds[@]}"} ${quick[@]+"${quick[@]}"} \
        --json "$out/packing.json"
    ;;
esac
exit "$status"
