"""Checkpoints: per-epoch training state for ``resume: true`` and encoder exports for finetune.

Two kinds of file live in a run's ``save_dir``:

``state.pt``
    Everything needed to continue a stopped run exactly where it left off: model,
    optimizer, LR scheduler, EMA weights, the global RNGs *and* the ``torch.Generator``
    that draws augmentations and batch order, the epoch and the best-so-far bookkeeping.
    Written after every epoch through a temporary file and ``os.replace``, so a run
    killed mid-write leaves the previous epoch's state intact.
``encoder.pt`` / ``encoder_last.pt``
    The encoder alone (no heads) plus the architecture that shapes it, in the form
    ``mode: finetune`` loads through ``init_from``.

Files are read with ``torch.load(weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor, nn

from trainers.params import ENCODER_ARCH_FIELDS, SAVE_DIR_PLACEHOLDER, ContrastiveParams
from trainers.reporter import TrainingFailed, one_line
from trainers.schedules import PLATEAU_THRESHOLD, Schedule

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
ENCODER_FILE = "encoder.pt"
LAST_ENCODER_FILE = "encoder_last.pt"
ENCODER_FORMAT = "contrastive-hpo/encoder/v1"
STATE_FORMAT = "contrastive-hpo/state/v1"

SPLIT_FROM = {"attn_dropout": "dropout"}
"""Parameters split off an older one: a checkpoint without them ran with the older's value."""

RESUME_MAY_DIFFER = frozenset(
    {
        "epochs",
        "resume",
        "save_dir",
        "device",
        "compile",
        "eval_batch_size",
        "evaluate_test",
        "artifact_dir",
        "early_stopping_patience",
        "eval_every",
        "knn_k",
        "probe_epochs",
        "collapse_std",
    }
)
"""Parameters a resumed run may change: they do not alter the training trajectory
(``epochs`` does when the LR schedule depends on it; that case is warned about; a
pretrain run's plateau schedule reads :data:`PLATEAU_PRETRAIN_READS`)."""

MICRO_BATCH_FIELDS = frozenset({"batch_size", "grad_accum"})
"""A resume may change these together when ``batch_size * grad_accum`` stays: the retry of a
run out of GPU memory (``workers.on_oom: retry_smaller_batch``) halves the one and doubles
the other, and its ``save_dir: runs/{seed}`` is the first try's folder."""

_EPOCH_DEPENDENT_SCHEDULES = frozenset({"warmup_cosine"})

PLATEAU_PRETRAIN_READS = frozenset({"eval_every", "probe_epochs"})
"""Of :data:`RESUME_MAY_DIFFER`, what a pretrain run's plateau schedule reads: it steps on
the probe F1 of evaluated epochs only, so these move its learning-rate cuts."""


def resolve_save_dir(p: ContrastiveParams) -> Path | None:
    """``save_dir`` with ``{name}`` placeholders filled from the params (``runs/{seed}``).

    Every trial of a study gets its own seed, so ``{seed}`` gives each trial its own
    folder without the trainer knowing about trials.
    """
    if not p.save_dir:
        return None
    values = p.model_dump()

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise TrainingFailed(
                "bad_params",
                f"save_dir {p.save_dir!r}: unknown placeholder {{{name}}}; "
                "use parameter names such as {seed} or {loss}",
            )
        return str(values[name])

    return Path(SAVE_DIR_PLACEHOLDER.sub(fill, p.save_dir)).expanduser()


def make_dir(path: Path, field: str) -> Path:
    """Create the output folder ``path`` that parameter ``field`` names, or fail as bad params.

    A raw ``FileNotFoundError`` or ``NotADirectoryError`` from ``mkdir`` read like a bug in
    the trainer; the path is the user's to fix, so ``hpo train`` exits 2 on it.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if isinstance(exc, FileExistsError) or (path.exists() and not path.is_dir()):
            why = "a file of that name exists"
        elif isinstance(exc, NotADirectoryError):
            why = "a part of the path is a file, not a folder"
        else:
            why = exc.strerror or type(exc).__name__
        raise TrainingFailed(
            "bad_params", one_line(f"{field}: cannot create the folder {path} ({why})")
        ) from None
    return path


def prepare_output_dirs(p: ContrastiveParams) -> Path | None:
    """Create ``save_dir`` and ``artifact_dir`` before the first epoch; return the save_dir.

    They were made at the first checkpoint or after the last epoch, so a folder that cannot
    exist cost a whole run before it failed.
    """
    save_dir = resolve_save_dir(p)
    if save_dir is not None:
        make_dir(save_dir, "save_dir")
    if p.artifact_dir:
        make_dir(Path(p.artifact_dir), "artifact_dir")
    return save_dir


def atomic_save(obj: Any, path: Path, field: str = "save_dir") -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace``.

    ``field`` names the parameter that chose the folder, for the error when it cannot be made.
    """
    make_dir(path.parent, field)
    write_atomically(path, lambda fh: torch.save(obj, fh))


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """``write(handle)`` into a temporary file beside ``path``, fsync, then ``os.replace``.

    A write cut short (a trial's timeout) must not leave a truncated file under the real
    name. The handle, not a name, goes to the writer: ``np.save``/``np.savez`` would add a
    suffix to a temporary name.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _load(path: Path, field: str) -> dict[str, Any]:
    """Read a checkpoint dict; any other file is a one-line ``bad_checkpoint`` naming ``field``.

    torch's own message spans lines and advises ``weights_only=False``, which would run
    whatever code the file holds: the short reason from :func:`_unreadable` replaces it.
    """
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": noise for a bad file
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, truncated, or not a torch file
        raise _not_a_checkpoint(field, path, _unreadable(path, exc)) from None
    if not isinstance(data, dict):
        raise _not_a_checkpoint(field, path, f"it holds a {type(data).__name__}, not a dict")
    return data


def _not_a_checkpoint(field: str, path: Path, why: str) -> TrainingFailed:
    return TrainingFailed(
        "bad_checkpoint",
        one_line(f"{field}: {path} is not a checkpoint written by this trainer ({why})"),
    )


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
_PICKLE_MAGIC = b"\x80"  # a pickle's PROTO opcode: the legacy torch.save format


def _unreadable(path: Path, exc: Exception) -> str:
    """Why ``torch.load`` failed, in a few words."""
    if isinstance(exc, OSError):
        return f"cannot read it: {exc.strerror or exc}"
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_ZIP_MAGIC))
    except OSError as err:
        return f"cannot read it: {err.strerror or err}"
    if not head:
        return "the file is empty"
    if not head.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):
        return "not a torch file"
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
        return "it holds Python objects, not only tensors and plain data"
    return "a damaged or truncated torch file"


# --------------------------------------------------------------------------- RNG state


def capture_rng(device: torch.device, generator: torch.Generator) -> dict[str, Any]:
    """The global torch (CPU and CUDA) and numpy RNGs plus the augmentation generator."""
    mt, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "numpy": {
            "kind": str(mt),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: Mapping[str, Any], device: torch.device, generator: torch.Generator) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    saved = state["generator"]
    if saved.numel() == generator.get_state().numel():
        generator.set_state(saved)
    else:
        # Written on another kind of device (a CUDA generator's state is 16 bytes, a CPU
        # one's 5056): the weights carry over, the augmentation stream cannot; seed it from
        # the restored global RNG, so the resumed run is still reproducible on this device.
        logger.warning(
            "resume: the checkpoint was written on another kind of device than %s; "
            "augmentations draw a new random stream from here on",
            device,
        )
        generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


# --------------------------------------------------------------------------- training state


class TrainingCheckpoint:
    """``save_dir/state.pt``: written after every epoch, restored by ``resume: true``.

    ``progress`` is the loop's own bookkeeping (best-so-far metric and weights, last
    metrics, ...): tensors, numbers, strings and containers of them. ``steps_per_epoch``
    is the loop's optimizer steps per epoch: a resume with another micro-batch (see
    :data:`MICRO_BATCH_FIELDS`) places a per-step LR schedule by it.
    """

    def __init__(
        self,
        directory: Path,
        p: ContrastiveParams,
        device: torch.device,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        generator: torch.Generator,
        ema_model: nn.Module | None = None,
        steps_per_epoch: int | None = None,
    ) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE
        self.p = p
        self.device = device
        self.model = model
        self.optimizer = optimizer
        self.schedule = schedule
        self.generator = generator
        self.ema_model = ema_model
        self.steps_per_epoch = steps_per_epoch

    def save(self, epoch: int, progress: Mapping[str, Any]) -> None:
        """Write the state at the end of ``epoch`` atomically."""
        scheduler = self.schedule.scheduler
        atomic_save(
            {
                "format": STATE_FORMAT,
                "epoch": epoch,
                "params": self.p.model_dump(),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "ema": self.ema_model.state_dict() if self.ema_model is not None else None,
                "rng": capture_rng(self.device, self.generator),
                "progress": dict(progress),
            },
            self.path,
        )

    def load(self) -> tuple[int, dict[str, Any]] | None:
        """Restore everything from ``state.pt``; ``None`` (start fresh) when there is none yet."""
        if not self.path.exists():
            logger.info("resume: no %s yet, starting from epoch 1", self.path)
            return None
        state = _load(self.path, "resume")
        if state.get("format") != STATE_FORMAT:
            raise TrainingFailed("bad_checkpoint", f"{self.path} is not a training state file")
        rebatched = self._check_params(state["params"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        scheduler = self.schedule.scheduler
        if scheduler is not None and state["scheduler"] is not None:
            saved = state["scheduler"]
            if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
                # cosine_restarts was CosineAnnealingWarmRestarts before: its step count
                # carries over, and the schedule goes on with each group's own minimum
                saved = {"lr_lambdas": [None] * len(scheduler.lr_lambdas), **saved}
            scheduler.load_state_dict(saved)
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                # an older checkpoint holds a relative threshold, under which a flat
                # negative metric counted as better: keep the absolute one of now
                scheduler.threshold, scheduler.threshold_mode = PLATEAU_THRESHOLD, "abs"
                scheduler._init_is_better(
                    mode=scheduler.mode, threshold=PLATEAU_THRESHOLD, threshold_mode="abs"
                )
        if rebatched:
            self._place_schedule(int(state["epoch"]))
        if self.ema_model is not None and state["ema"] is not None:
            self.ema_model.load_state_dict(state["ema"])
        restore_rng(state["rng"], self.device, self.generator)
        return int(state["epoch"]), dict(state["progress"])

    def _place_schedule(self, epoch: int) -> None:
        """Put a per-step LR schedule at the end of ``epoch`` in the steps of this run.

        Steps per epoch are ``ceil((n_train // batch_size) / grad_accum)``: a half batch
        of the ragged tail trains as one more micro-batch at half the batch size, so the
        checkpoint's step count may be up to one step per epoch short of this run's, and
        the schedule (laid out in this run's steps) would lag by as much to its end.
        Plateau steps per epoch, and the optimizer's and EMA's counts are the steps taken.
        """
        scheduler = self.schedule.scheduler
        if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            return
        if self.steps_per_epoch is None:
            logger.warning(
                "resume: an epoch of the new micro-batch may take one optimizer step more "
                "than before; the %s schedule goes on from the checkpoint's step %d and may "
                "lag by up to %d steps",
                self.p.scheduler,
                scheduler.last_epoch,
                epoch,
            )
            return
        step = epoch * self.steps_per_epoch
        if step == scheduler.last_epoch:
            return
        logger.info(
            "resume: %d optimizer steps per epoch now; the %s schedule goes on from step %d "
            "(the checkpoint's count was %d)",
            self.steps_per_epoch,
            self.p.scheduler,
            step,
            scheduler.last_epoch,
        )
        rates = [
            base * factor(step)
            for factor, base in zip(scheduler.lr_lambdas, scheduler.base_lrs, strict=True)
        ]
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        scheduler.last_epoch = step
        scheduler._last_lr = rates

    def _check_params(self, saved: Mapping[str, Any]) -> bool:
        """Refuse a state written with other parameters; True: only the micro-batch changed."""
        now = self.p.model_dump()
        # A parameter added after the checkpoint was written counts as its default there,
        # or as the older parameter that used to set it.
        fields = type(self.p).model_fields
        missing = {k: fields[k].default for k in now if k in fields and k not in saved}
        for new_name, old_name in SPLIT_FROM.items():
            if new_name in missing and old_name in saved:
                missing[new_name] = saved[old_name]
        saved = {**missing, **saved}
        if saved.get("mode") == "align" and saved.get("n_prototypes") is None:
            # until 2026-12-07 align resolved "one per class" with its one class: 1
            saved["n_prototypes"] = 1
        unread = {"n_prototypes"} if now.get("model") == "conv" else set()  # no prototypes
        may_differ = RESUME_MAY_DIFFER
        if now.get("mode") == "pretrain" and now.get("scheduler") == "plateau":
            may_differ = may_differ - PLATEAU_PRETRAIN_READS
        differ = sorted(
            k
            for k in set(saved) | set(now)
            if k not in may_differ | unread and saved.get(k) != now.get(k)
        )
        rebatched = _same_effective_batch(saved, now, differ)
        if differ and not rebatched:
            shown = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in differ[:6])
            together = (
                " (batch_size and grad_accum may change together, keeping their product)"
                if set(differ) <= MICRO_BATCH_FIELDS
                else ""
            )
            raise TrainingFailed(
                "resume_mismatch",
                f"cannot resume from {self.path}: it was written with other parameters "
                f"({shown}){together}; use the same parameters or another save_dir",
            )
        if rebatched:
            logger.warning(
                "resume: micro-batch changed from batch_size %s x grad_accum %s to %s x %s "
                "(the same effective batch); batches, augmentations and BatchNorm statistics "
                "differ from here on, so results differ from a straight run",
                saved["batch_size"],
                saved["grad_accum"],
                now["batch_size"],
                now["grad_accum"],
            )
        _warn_epochs_changed(saved, now)
        return rebatched


def _same_effective_batch(
    saved: Mapping[str, Any], now: Mapping[str, Any], differ: list[str]
) -> bool:
    """Only ``batch_size`` and ``grad_accum`` differ, and their product does not."""
    if not differ or not set(differ) <= MICRO_BATCH_FIELDS:
        return False
    return bool(saved["batch_size"] * saved["grad_accum"] == now["batch_size"] * now["grad_accum"])


def _warn_epochs_changed(saved: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """Another ``epochs`` may be resumed, but a schedule that reads it goes another way."""
    if saved.get("epochs") == now["epochs"]:
        return
    if now["mode"] == "pretrain" and now["scheduler"] == "plateau" and now["eval_every"] > 1:
        logger.warning(
            "resume: epochs changed from %s to %s; a pretraining run always evaluates its "
            "last epoch, so the plateau schedule had one more probe to step on than a "
            "straight %s-epoch run with eval_every %s; results may differ",
            saved.get("epochs"),
            now["epochs"],
            now["epochs"],
            now["eval_every"],
        )
    if now["scheduler"] in _EPOCH_DEPENDENT_SCHEDULES:
        logger.warning(
            "resume: epochs changed from %s to %s; the %s schedule is stretched to the new "
            "length from here on, so results differ from a straight %s-epoch run",
            saved.get("epochs"),
            now["epochs"],
            now["scheduler"],
            now["epochs"],
        )


# --------------------------------------------------------------------------- encoder exports


@dataclass(frozen=True)
class EncoderCheckpoint:
    """A pretrained encoder as ``mode: finetune`` needs it."""

    path: Path
    state: dict[str, Tensor]
    arch: dict[str, Any]
    in_channels: int
    length: int
    dataset: str
    epoch: int
    metrics: dict[str, float]
    adapter: dict[str, Tensor] | None = None
    """A fine-tuned :class:`~trainers.finetune.ChannelAdapter` in front of the encoder
    (``conv.weight`` / ``conv.bias``), when the encoder was fine-tuned on other channels."""

    @property
    def adapter_channels(self) -> int | None:
        """The data channels the saved adapter maps from (None: no adapter)."""
        return None if self.adapter is None else int(self.adapter["conv.weight"].shape[1])


def encoder_arch(model: nn.Module, p: ContrastiveParams) -> dict[str, Any]:
    """The shape-defining parameters of ``model``'s encoder (``n_prototypes`` resolved)."""
    arch = {name: getattr(p, name) for name in ENCODER_ARCH_FIELDS}
    arch["n_prototypes"] = getattr(model, "n_prototypes", p.n_prototypes)
    return arch


def save_encoder(
    path: Path,
    encoder_state: Mapping[str, Tensor],
    arch: Mapping[str, Any],
    *,
    in_channels: int,
    length: int,
    dataset: str,
    epoch: int,
    metrics: Mapping[str, float],
    adapter_state: Mapping[str, Tensor] | None = None,
) -> None:
    """Write an encoder export atomically (weights copied to CPU).

    ``in_channels`` is the encoder's own input; with ``adapter_state`` the data had other
    channels, which the saved channel adapter maps onto the encoder's.
    """
    export: dict[str, Any] = {
        "format": ENCODER_FORMAT,
        "encoder": {k: v.detach().cpu() for k, v in encoder_state.items()},
        "arch": dict(arch),
        "in_channels": in_channels,
        "length": length,
        "dataset": dataset,
        "epoch": epoch,
        "metrics": {k: float(v) for k, v in metrics.items()},
    }
    if adapter_state:
        export["adapter"] = {k: v.detach().cpu() for k, v in adapter_state.items()}
    atomic_save(export, path)


def _strip(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


@dataclass(frozen=True)
class EncoderPart:
    """The encoder (and channel adapter, if any) of a full model state dict."""

    encoder: dict[str, Tensor]
    adapter: dict[str, Tensor] | None

    @property
    def in_channels(self) -> int | None:
        """The encoder's own input channels, read from the adapter (None: no adapter)."""
        return None if self.adapter is None else int(self.adapter["conv.weight"].shape[0])


def encoder_part(state: Mapping[str, Tensor]) -> EncoderPart:
    """The encoder entries of a full model state dict, prefixes removed.

    A plain model keeps its encoder under ``encoder.``; a fine-tuned model with a channel
    adapter (:class:`~trainers.finetune.ChannelAdaptedModel`) under ``inner.encoder.``,
    with the adapter under ``adapter.``.
    """
    plain = _strip(state, "encoder.")
    if plain:
        return EncoderPart(plain, None)
    return EncoderPart(_strip(state, "inner.encoder."), _strip(state, "adapter.") or None)


def encoder_file(path: str | Path) -> Path:
    """The ``encoder.pt`` that ``init_from`` names: the file, or the one in a save_dir."""
    file = Path(path).expanduser()
    return file / ENCODER_FILE if file.is_dir() else file


def missing_encoder(path: str | Path) -> str | None:
    """Why ``init_from`` names no encoder checkpoint (checked before a study starts too)."""
    file = encoder_file(path)
    if file.exists():
        return None
    return (
        f"no encoder checkpoint at {file}; point it at the encoder.pt (or the save_dir) "
        "written by a mode: pretrain run"
    )


def load_encoder(path: str | Path) -> EncoderCheckpoint:
    """Read ``encoder.pt``; a folder means the ``encoder.pt`` inside it (a run's save_dir)."""
    missing = missing_encoder(path)
    if missing is not None:
        raise TrainingFailed("bad_checkpoint", f"init_from: {missing}")
    file = encoder_file(path)
    data = _load(file, "init_from")
    if data.get("format") != ENCODER_FORMAT:
        raise TrainingFailed(
            "bad_checkpoint", f"init_from: {file} is not an encoder checkpoint (encoder.pt)"
        )
    return EncoderCheckpoint(
        path=file,
        state=dict(data["encoder"]),
        arch=dict(data["arch"]),
        in_channels=int(data["in_channels"]),
        length=int(data["length"]),
        dataset=str(data["dataset"]),
        epoch=int(data["epoch"]),
        metrics=dict(data["metrics"]),
        adapter=dict(data["adapter"]) if data.get("adapter") else None,
    )
