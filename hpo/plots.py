"""PNG pictures of one trial: learning curves, confusion matrix, t-SNE of embeddings.

Uses matplotlib's object API (no pyplot, no global backend state) so plotting is safe
in worker threads and never opens a window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_TSNE_POINTS = 1000
"""t-SNE is quadratic; a stratified-enough random subsample keeps it to seconds on a CPU."""
_MAX_ANNOTATED_CLASSES = 20


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=90, layout="tight")


_PANELS = ("loss", "metrics", "learning rate", "time (s)", "memory (MB)")


def _panel_of(key: str) -> str:
    """Which panel a history key belongs to, so values of one scale share an axis."""
    lowered = key.lower()
    if "loss" in lowered or lowered.endswith("_ce") or lowered.startswith("train_"):
        return "loss"
    if lowered in {"lr", "learning_rate"} or lowered.endswith("_lr") or lowered.startswith("lr_"):
        return "learning rate"
    if lowered.endswith(("_seconds", "_sec", "_s")):
        return "time (s)"
    if lowered.endswith(("_mb", "_memory")):
        return "memory (MB)"
    return "metrics"


def _outside_unit_range(history: Sequence[tuple[int, dict[str, float]]]) -> set[str]:
    """Keys with a finite value outside [0, 1] (a count, a rank, a score)."""
    return {
        key
        for _, metrics in history
        for key, value in metrics.items()
        if math.isfinite(value) and not 0.0 <= value <= 1.0
    }


def learning_curve_panels(
    history: Sequence[tuple[int, dict[str, float]]],
) -> dict[str, list[str]]:
    """Panel title -> history keys, in drawing order.

    A metric outside [0, 1] (``rankme`` runs up to the embedding width) gets a panel of its
    own, shared with its ``best_`` twin: beside F1 scores it would flatten them to a line.
    """
    keys: dict[str, list[str]] = {}
    outside = _outside_unit_range(history)
    for _, metrics in history:
        for key in metrics:
            panel = _panel_of(key)
            if panel == "metrics" and key in outside:
                panel = key.removeprefix("best_")
            members = keys.setdefault(panel, [])
            if key not in members:
                members.append(key)
    order = [name for name in _PANELS if name in keys]
    own = sorted(name for name in keys if name not in _PANELS)
    at = order.index("metrics") + 1 if "metrics" in order else int("loss" in order)
    return {name: keys[name] for name in order[:at] + own + order[at:]}


def plot_learning_curves(
    history: Sequence[tuple[int, dict[str, float]]], path: Path, title: str = ""
) -> Path | None:
    """Losses, validation metrics, learning rate (and time/memory when reported) by epoch.

    Returns ``None`` when nothing was reported (a trial that failed before epoch 1).
    """
    from matplotlib.ticker import MaxNLocator

    keys = learning_curve_panels(history)
    panels = list(keys)
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = _figure(4.2 * ncols, 3.2 * nrows + 0.4)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax, panel in zip(axes, panels, strict=False):
        for key in keys[panel]:
            points = [(step, m[key]) for step, m in history if key in m]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=key)
        if panel == "learning rate" and all(
            m[k] > 0 for _, m in history for k in keys[panel] if k in m
        ):
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    if title:
        fig.suptitle(title)
    fig.savefig(path, format="png")
    return path


def plot_confusion_matrix(
    matrix: np.ndarray, path: Path, class_names: Sequence[str] | None = None, title: str = ""
) -> Path:
    """Row-normalised colours (recall per class) with raw counts written in the cells."""
    counts = np.asarray(matrix, dtype=np.int64)
    k = counts.shape[0]
    if counts.ndim != 2 or counts.shape[1] != k:
        raise ValueError(f"confusion matrix must be K×K, got shape {counts.shape}")
    names = (
        [str(c) for c in class_names]
        if class_names is not None and len(class_names) == k
        else [str(i) for i in range(k)]
    )
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    size = min(3.0 + 0.45 * k, 14.0)
    fig = _figure(size + 1.0, size)
    ax: Axes = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of true class")
    crowded = k * max(len(n) for n in names) > 36
    ax.set_xticks(
        range(k), names, rotation=40 if crowded else 0, ha="right" if crowded else "center"
    )
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= _MAX_ANNOTATED_CLASSES:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize="small",
                    color="white" if normalised[i, j] > 0.5 else "black",
                )
    ax.set_title(title or "confusion matrix (best epoch)")
    fig.savefig(path, format="png")
    return path


def tsne_2d(z: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 2-D t-SNE of ``z`` (PCA to 50 dimensions first, as usual for wide embeddings)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    z = np.asarray(z, dtype=np.float32).reshape(len(z), -1)
    n = len(z)
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    perplexity = float(min(30.0, (n - 1) / 3.0))
    # One thread: OpenMP spinning on a machine busy with training is ~10x slower, and a
    # worker must not steal the cores its neighbours train on.
    with threadpool_limits(limits=1):
        if z.shape[1] > 50 and n > 50:
            z = PCA(n_components=50, random_state=seed).fit_transform(z)
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
        return np.asarray(tsne.fit_transform(z))


def subsample(n: int, max_points: int = MAX_TSNE_POINTS, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` rows, reproducible from ``seed``."""
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False))


def plot_embeddings(
    z: np.ndarray,
    y: np.ndarray,
    path: Path,
    class_names: Sequence[str] | None = None,
    *,
    max_points: int = MAX_TSNE_POINTS,
    seed: int = 0,
    title: str = "",
) -> Path:
    """t-SNE of validation embeddings coloured by class: separated clusters mean the
    contrastive objective learned class structure, one blob means collapse."""
    idx = subsample(len(z), max_points, seed)
    points = tsne_2d(np.asarray(z)[idx], seed=seed)
    labels = np.asarray(y).reshape(-1)[idx]
    fig = _figure(5.5, 4.8)
    ax: Axes = fig.subplots()
    classes = np.unique(labels)
    cmap = "tab10" if len(classes) <= 10 else "tab20"
    from matplotlib import colormaps

    colours = colormaps[cmap]
    for i, cls in enumerate(classes):
        mask = labels == cls
        name = (
            str(class_names[int(cls)])
            if class_names is not None and 0 <= int(cls) < len(class_names)
            else str(cls)
        )
        ax.scatter(points[mask, 0], points[mask, 1], s=8, color=colours(i % colours.N), label=name)
    ax.set_xticks([])
    ax.set_yticks([])
    if len(classes) <= 20:
        ax.legend(fontsize="small", markerscale=2, loc="upper right")
    ax.set_title(title or f"t-SNE of validation embeddings ({len(idx)} points)")
    fig.savefig(path, format="png")
    return path
