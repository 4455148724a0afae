"""CUDA failures a trial can end with, told apart by what the worker must do next.

- Out of memory (``cuda_oom``): the process is fine once the trial's tensors are freed;
  ``workers.on_oom`` may retry the trial with a smaller batch.
- A *sticky* error (``cuda_error``: an illegal memory access, a device-side assert, a
  launch failure, an uncorrectable ECC error): NVIDIA's runtime leaves the process's CUDA
  context unusable until the process ends. Every later trial in it would fail at its
  first CUDA call, within milliseconds, and use up the study's budget as failures. The
  trial is queued again and the worker exits (:data:`CUDA_BROKEN_EXIT`), so that a fresh
  process (the supervisor's restart, or Slurm's / Kubernetes') takes its place.

Errors arrive as ``torch.OutOfMemoryError`` or ``torch.AcceleratorError`` from torch's
own calls, but also as a plain ``RuntimeError`` from cuBLAS, cuDNN or cuFFT, and wrapped
by a library (``raise ... from``): the whole exception chain is read.
"""

from __future__ import annotations

from hpo.errors import HpoError, exception_chain

CUDA_OOM = "cuda_oom"
"""``fail_reason`` of a trial that ran out of GPU memory."""

CUDA_ERROR = "cuda_error"
"""``fail_reason`` of a trial whose process lost its CUDA context."""

CUDA_BROKEN_EXIT = 76
"""Exit status of a worker that stopped because its CUDA context is unusable."""

_OOM_MARKS = (
    "cuda out of memory",
    "cuda error: out of memory",
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
    "cufft_alloc_failed",
    "hip out of memory",
)
_STICKY_MARKS = (  # cudaGetErrorString of the errors that corrupt the context
    "an illegal memory access was encountered",
    "device-side assert triggered",
    "unspecified launch failure",
    "misaligned address",
    "an illegal instruction was encountered",
    "uncorrectable ecc error",
    "the launch timed out and was terminated",
    "hardware stack error",
    "invalid program counter",
)


def is_cuda_oom(exc: BaseException) -> bool:
    """Whether ``exc`` (or one it came from) is the GPU running out of memory."""
    for link in exception_chain(exc):
        if type(link).__name__ == "OutOfMemoryError":
            return True
        text = str(link).lower()
        if any(mark in text for mark in _OOM_MARKS):
            return True
    return False


def is_sticky_cuda_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or one it came from) left this process's CUDA context unusable."""
    return any(
        any(mark in str(link).lower() for mark in _STICKY_MARKS) for link in exception_chain(exc)
    )


class CudaContextLost(HpoError):
    """This process can no longer use its GPU: it must end so a fresh one continues."""

    exit_code = CUDA_BROKEN_EXIT
