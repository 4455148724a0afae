"""What the hardware and the run's environment need: device, precision, compiling, seeds, memory.

Every mode (supervised, pretrain, finetune, align) sets its run up with these, so one
device rule and one autocast rule hold for all of them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainers.reporter import TrainingFailed


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when a GPU is visible (workers set CUDA_VISIBLE_DEVICES), else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingFailed("no_cuda", f"device {name!r} requested but CUDA is not available")
    if device.type == "cuda" and device.index is not None:
        problem = cuda_index_problem(name, device.index, torch.cuda.device_count())
        if problem is not None:
            raise TrainingFailed("no_cuda", problem)
    return device


def cuda_index_problem(name: str, index: int, count: int) -> str | None:
    """Why ``cuda:index`` is not among the ``count`` GPUs this process sees, or None.

    Such a device failed at the first tensor with torch's "invalid device ordinal",
    recorded as a generic exception. A worker is given its GPU(s) through
    CUDA_VISIBLE_DEVICES, which numbers them from cuda:0 whichever they are.
    """
    if index < count:
        return None
    seen = {0: "none", 1: "cuda:0"}.get(count, f"cuda:0 to cuda:{count - 1}")
    return (
        f"device {name!r} requested but this process sees {count} CUDA device(s) ({seen}); "
        "each hpo worker sees only its own GPU(s), numbered from cuda:0, so use device: "
        "cuda or auto"
    )


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (when supported) for ``auto``/``bf16``; CPU trains in fp32.

    Supported means natively, on ``device`` itself: ``torch.cuda.is_bf16_supported()``
    also says yes for pre-Ampere GPUs that only emulate bf16 (slower than fp32), and
    asks about the current device rather than this one.
    """
    if device.type != "cuda" or precision == "fp32":
        return None
    if torch.cuda.get_device_capability(device) >= (8, 0):
        return torch.bfloat16
    return None


def compile_step_model(model: nn.Module, enabled: bool, device: torch.device) -> nn.Module:
    """The module a training step calls: ``model`` compiled when asked on CUDA, else itself.

    On a CPU compiling does not pay (docs/benchmarks.md, "torch.compile"), so ``compile``
    is a CUDA option and the CPU trains eagerly.
    """
    if not enabled or device.type != "cuda":
        return model
    return fresh_compile(model)


def fresh_compile(model: nn.Module, backend: str = "inductor") -> nn.Module:
    """``torch.compile`` after forgetting every graph compiled earlier in this process.

    A worker trains trial after trial in one process, each model with its own shapes.
    Dynamo keeps the earlier trials' graphs for the same ``forward`` and, past its
    recompile limit (8), runs that frame eagerly without an error: the ninth trial of a
    new shape would train uncompiled. The earlier models are gone, so their graphs go too;
    inductor's on-disk cache still makes a shape seen before cheap to compile again.
    """
    import torch._dynamo  # only a compiled run pays for the import

    torch._dynamo.reset()
    return torch.compile(model, backend=backend)  # type: ignore[return-value]


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy; the trainer draws all randomness from these."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated GPU memory, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except (ImportError, OSError):
        return float("nan")
