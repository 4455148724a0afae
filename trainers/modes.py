"""The non-supervised modes of the contrastive trainer, dispatched by ``params.mode``.

``trainers.contrastive.train`` hands every run whose mode is not ``supervised`` here:

* ``pretrain`` — self-supervised two-view training, judged by linear probe and k-NN
  (:mod:`trainers.pretrain`);
* ``finetune`` — the supervised loop around an encoder from ``init_from``
  (:mod:`trainers.finetune`);
* ``align`` — regress a target embedding given per sample (:mod:`trainers.align`).

Each lives in its own module so a run imports only what it uses.
"""

from __future__ import annotations

from trainers.params import ContrastiveParams
from trainers.reporter import Reporter


def train_mode(p: ContrastiveParams, reporter: Reporter) -> dict[str, float]:
    """Run ``p.mode`` (pretrain, finetune or align) and return its result metrics."""
    if p.mode == "pretrain":
        from trainers.pretrain import train_pretrain

        return train_pretrain(p, reporter)
    if p.mode == "finetune":
        from trainers.finetune import train_finetune

        return train_finetune(p, reporter)
    if p.mode == "align":
        from trainers.align import train_align

        return train_align(p, reporter)
    raise ValueError(f"train_mode handles pretrain, finetune and align, not {p.mode!r}")
