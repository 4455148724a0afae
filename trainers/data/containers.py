"""What the loader hands out (numpy splits, their on-device twins) and what readers hand in.

torch is imported only when tensors are asked for, so loading data never pulls it in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.data._typing import Float32Array, Int64Array

if TYPE_CHECKING:
    import torch


@dataclass
class TimeSeriesSplits:
    """Standardised numpy splits: x float32 ``(n, C, T)``, y int64 in ``0..n_classes-1``.

    Loaded with ``allow_unlabeled``, y is :data:`UNLABELED` for a series without a label.
    """

    x_train: Float32Array
    y_train: Int64Array
    x_val: Float32Array
    y_val: Int64Array
    class_names: list[str]
    x_test: Float32Array | None = None
    y_test: Int64Array | None = None

    @property
    def n_channels(self) -> int:
        """Channels per series."""
        return int(self.x_train.shape[1])

    @property
    def length(self) -> int:
        """Time steps per series (all splits share it)."""
        return int(self.x_train.shape[2])

    @property
    def n_classes(self) -> int:
        """Classes seen in train; labels index :attr:`class_names`."""
        return len(self.class_names)

    def to_tensors(self, device: str | torch.device = "cpu") -> DeviceSplits:
        """Move everything to ``device`` once; callers batch by index slicing, no DataLoader."""
        return DeviceSplits(
            x_train=_tensor(self.x_train, device),
            y_train=_tensor(self.y_train, device),
            x_val=_tensor(self.x_val, device),
            y_val=_tensor(self.y_val, device),
            class_names=list(self.class_names),
            x_test=_optional_tensor(self.x_test, device),
            y_test=_optional_tensor(self.y_test, device),
        )


@dataclass
class DeviceSplits:
    """:class:`TimeSeriesSplits` as torch tensors resident on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    class_names: list[str]
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    @property
    def n_channels(self) -> int:
        """Channels per series."""
        return int(self.x_train.shape[1])

    @property
    def length(self) -> int:
        """Time steps per series."""
        return int(self.x_train.shape[2])

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.x_train.device


@dataclass
class AlignmentSplits:
    """Series ``x`` (standardised as in :class:`TimeSeriesSplits`) with target embeddings ``z``."""

    x_train: Float32Array
    z_train: Float32Array
    x_val: Float32Array
    z_val: Float32Array
    x_test: Float32Array | None = None
    z_test: Float32Array | None = None

    @property
    def n_channels(self) -> int:
        """Channels per series."""
        return int(self.x_train.shape[1])

    @property
    def length(self) -> int:
        """Time steps per series."""
        return int(self.x_train.shape[2])

    @property
    def embed_dim(self) -> int:
        """Dimension of the target embeddings."""
        return int(self.z_train.shape[1])

    def to_tensors(self, device: str | torch.device = "cpu") -> DeviceAlignmentSplits:
        """Move everything to ``device`` once."""
        return DeviceAlignmentSplits(
            x_train=_tensor(self.x_train, device),
            z_train=_tensor(self.z_train, device),
            x_val=_tensor(self.x_val, device),
            z_val=_tensor(self.z_val, device),
            x_test=_optional_tensor(self.x_test, device),
            z_test=_optional_tensor(self.z_test, device),
        )


@dataclass
class DeviceAlignmentSplits:
    """:class:`AlignmentSplits` as torch tensors resident on one device."""

    x_train: torch.Tensor
    z_train: torch.Tensor
    x_val: torch.Tensor
    z_val: torch.Tensor
    x_test: torch.Tensor | None = None
    z_test: torch.Tensor | None = None

    @property
    def n_channels(self) -> int:
        """Channels per series."""
        return int(self.x_train.shape[1])

    @property
    def length(self) -> int:
        """Time steps per series."""
        return int(self.x_train.shape[2])

    @property
    def embed_dim(self) -> int:
        """Dimension of the target embeddings."""
        return int(self.z_train.shape[1])


def _tensor(array: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """Copy a numpy array to ``device`` (torch imported only when tensors are wanted)."""
    import torch

    return torch.as_tensor(np.ascontiguousarray(array), device=device)


def _optional_tensor(array: np.ndarray | None, device: str | torch.device) -> torch.Tensor | None:
    """:func:`_tensor`, passing ``None`` through."""
    return None if array is None else _tensor(array, device)


@dataclass
class _Raw:
    """Data as read from disk, before any cleaning: x is 3-D or a list of 2-D ``(C, T_i)``."""

    source: str
    x_train: Any
    y_train: np.ndarray | None  # None: the source has no labels at all
    x_test: Any = None
    y_test: np.ndarray | None = None
    label_names: Mapping[Any, str] | None = None
    channel_names: Sequence[str] | None = None
    subjects_train: np.ndarray | None = None  # who recorded each train series, where known
