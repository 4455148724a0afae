"""Parameters of the shared contrastive trainer, published as a pydantic schema.

``hpo validate`` checks a study's fixed params and every value its space can produce
against this schema, so ``loss: infonc`` fails in a second, not after a GPU hour.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from trainers.augment import parse_policy
from trainers.losses import CONTRASTIVE_LOSSES, LOSS_KWARGS, loss_kwargs

LossName = Literal[
    "infonce", "supcon", "triplet", "barlow_twins", "vicreg", "cosine", "mse", "cosine_mse", "none"
]
assert set(CONTRASTIVE_LOSSES) | {"none"} == set(LossName.__args__)  # type: ignore[attr-defined]

LABEL_FREE_LOSSES = ("infonce", "barlow_twins", "vicreg", "cosine", "mse", "cosine_mse")
ALIGN_LOSSES = ("mse", "cosine", "cosine_mse", "infonce")
ALIGN_INFONCE_MIN_BATCH = 16

SAVE_DIR_PLACEHOLDER = re.compile(r"\{(\w+)\}")
"""A ``{name}`` in ``save_dir``, filled with that parameter's value (``runs/{seed}``)."""

DEVICE_PATTERN = re.compile(r"auto|cpu|(cuda|mps|xpu)(:\d+)?")
"""Devices :func:`trainers.runtime.resolve_device` takes; checked by form only, since
``hpo validate`` may run on a machine without the GPU its workers have."""


ENCODER_ARCH_FIELDS = (
    "model",
    "dim",
    "depth",
    "n_heads",
    "mlp_ratio",
    "use_cbam",
    "use_dim_reduction",
    "reduction_dim",
    "n_prototypes",
    "kernel_size",
    "conv_layers",
)
"""Parameters that fix the encoder's weight shapes; finetune takes them from the checkpoint."""

FINETUNE_FIELDS = ("init_from", "freeze", "encoder_lr_scale", "channel_adapter")
"""Read by ``mode: finetune`` only: any other mode trains from scratch whatever they say."""
PRETRAIN_ONLY_FIELDS = frozenset({"eval_every", "knn_k", "probe_epochs", "collapse_std"})
"""Read by ``mode: pretrain`` alone (its probe, k-NN score and collapse check)."""


class CrossFieldError(ValueError):
    """A problem of several fields together, naming the fields its check reads.

    ``hpo validate`` pins such a problem on the searched fields it involves, not on
    whichever searched field it was checking (``n_heads: [3]`` beside ``loss: [...]`` is
    ``n_heads``'s problem), and trusts it only when it saw the user's value of each.
    """

    def __init__(self, message: str, fields: Iterable[str]) -> None:
        super().__init__(message)
        self.fields = frozenset(fields)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with its fields (a ``ValidationError`` that holds it crosses processes)."""
        return (CrossFieldError, (str(self), tuple(sorted(self.fields))))


_HEADS_FIELDS = ("n_heads", "dim", "use_dim_reduction", "reduction_dim", "model", "mode")


class ContrastiveParams(BaseModel):
    """Everything one run of :func:`trainers.contrastive.train` can be told.

    The total supervised loss is ``(1 - w) * CE + w * contrastive`` with
    ``w = contrastive_weight`` (``loss_mix: convex``, the default), or
    ``CE + w * contrastive`` with ``loss_mix: additive``.
    """

    model_config = ConfigDict(extra="forbid")

    # --- what to do -------------------------------------------------------------------
    mode: Literal["supervised", "pretrain", "finetune", "align"] = Field(
        default="supervised",
        description="supervised: CE + contrastive; pretrain: SSL without labels; "
        "finetune: from a pretrained encoder; align: regress target embeddings",
    )

    # --- data -------------------------------------------------------------------------
    dataset: str = Field(
        default="BasicMotions",
        description="aeon-bundled UEA/UCR name, synthetic_har, uci_har, or a path (.npz, .ts, folder)",
    )
    data_dir: str | None = Field(default=None, description="folder for uci_har / relative paths")
    val_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    val_split: Literal["stratified", "subject"] = Field(
        default="stratified",
        description="validation series drawn per class (stratified), or whole subjects "
        "(subject: no person in both train and validation; needs subject ids)",
    )
    split_seed: int = Field(
        default=0, ge=0, description="seed of the validation split; fixed across trials"
    )
    length: int | None = Field(default=None, ge=2, le=1_000_000)
    length_policy: Literal["resample", "pad"] = "resample"
    synthetic_n_train: int = Field(default=7352, ge=12, le=1_000_000)
    synthetic_n_test: int = Field(default=2947, ge=6, le=1_000_000)
    synthetic_noise: float = Field(
        default=0.2,
        ge=0.0,
        le=10.0,
        description="synthetic_har sensor noise; higher makes the task harder (benchmarks)",
    )
    evaluate_test: bool = Field(
        default=False, description="score the held-out test split with the best weights"
    )
    unlabeled_label: int | str | None = Field(
        default=None,
        description="pretrain: the label value of series without a label (NaN always is one; "
        "an .npz without y has no labels at all)",
    )

    # --- run --------------------------------------------------------------------------
    seed: int = Field(default=0, ge=0)
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="auto: bf16 autocast on CUDA when supported, else fp32"
    )
    compile: bool = Field(default=False, description="torch.compile the model (CUDA only)")
    epochs: int = Field(default=60, ge=1, le=100_000)
    batch_size: int = Field(default=32, ge=2, le=65_536)
    grad_accum: int = Field(default=1, ge=1, le=1024)
    eval_batch_size: int = Field(default=1024, ge=1, le=1_000_000)
    artifact_dir: str | None = Field(
        default=None, description="write checkpoint, confusion matrix and embeddings here"
    )

    # --- optimisation -----------------------------------------------------------------
    lr: float = Field(default=3e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(default=1e-2, ge=0.0, le=10.0)
    scheduler: Literal["warmup_cosine", "cosine_restarts", "plateau", "none"] = "warmup_cosine"
    warmup_epochs: int = Field(default=3, ge=0, le=10_000)
    t_0: int = Field(default=10, ge=1, le=10_000, description="cosine_restarts: first period")
    t_mult: int = Field(default=1, ge=1, le=10, description="cosine_restarts: period growth")
    plateau_patience: int = Field(
        default=5,
        ge=1,
        le=10_000,
        description="epochs without a better monitored metric (pretrain: probe evaluations)",
    )
    plateau_factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    min_lr_ratio: float = Field(default=0.01, ge=0.0, le=1.0)
    grad_clip: float = Field(default=1.0, ge=0.0, description="max grad norm; 0 turns it off")
    label_smoothing: float = Field(default=0.0, ge=0.0, le=0.5)
    ema_decay: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="EMA of weights for evaluation; 0 is off"
    )
    early_stopping_patience: int = Field(
        default=0, ge=0, description="epochs without val improvement; 0 is off"
    )
    monitor: Literal["val_f1", "val_loss", "val_accuracy", "val_auc"] = Field(
        default="val_f1",
        description="what picks the best epoch (kept weights, test score, early stopping)",
    )

    # --- model ------------------------------------------------------------------------
    model: Literal["crossformer", "conv"] = "crossformer"
    dim: int = Field(default=64, ge=4, le=4096)
    depth: int = Field(default=1, ge=1, le=24)
    n_heads: int = Field(default=4, ge=1, le=64)
    mlp_ratio: float = Field(default=2.0, gt=0.0, le=16.0)
    dropout: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="sub-layer outputs and MLP activations"
    )
    attn_dropout: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="attention weights; above 0 a CPU cannot use its fused attention kernel",
    )
    use_cbam: bool = True
    use_dim_reduction: bool = Field(default=False, description="dim -> reduction_dim -> dim")
    reduction_dim: int = Field(default=32, ge=2, le=4096)
    n_prototypes: int | None = Field(
        default=None, ge=1, le=4096, description="None: one per class (mode align: 6)"
    )
    proto_init: Literal["xavier", "class_mean"] = "xavier"
    proto_proj: Literal["linear", "mlp"] = Field(
        default="linear", description="mlp is Linear-BatchNorm-GELU-Linear"
    )
    proj_dim: int = Field(default=64, ge=2, le=8192)
    proj_hidden_dim: int = Field(default=128, ge=2, le=16_384)
    proj_depth: int = Field(default=1, ge=1, le=8)
    kernel_size: int = Field(default=7, ge=1, le=255)
    conv_layers: int = Field(default=2, ge=1, le=16)

    # --- losses -----------------------------------------------------------------------
    loss: LossName = "infonce"
    contrastive_weight: float = Field(default=0.1, ge=0.0, le=1.0)
    loss_mix: Literal["convex", "additive"] = "convex"
    temperature: float = Field(default=0.1, gt=0.0, le=10.0)
    hard_negative_weight: float = Field(default=0.0, ge=0.0, le=100.0)
    margin: float = Field(default=0.3, ge=0.0, le=10.0)
    barlow_lambda: float = Field(default=5e-3, ge=0.0, le=1.0)
    vicreg_sim_weight: float = Field(default=25.0, ge=0.0)
    vicreg_var_weight: float = Field(default=25.0, ge=0.0)
    vicreg_cov_weight: float = Field(default=1.0, ge=0.0)
    cosine_weight: float = Field(default=1.0, ge=0.0)
    mse_weight: float = Field(default=1.0, ge=0.0)

    # --- augmentations ----------------------------------------------------------------
    augment: str | list[str | dict[str, Any]] = Field(
        default="default",
        description="policy (none, weak, default, strong, simclr_ts), a list, or a recipe "
        "such as 'jitter(strength=2, p=0.8) + scaling'",
    )
    augment_strength: float = Field(default=1.0, ge=0.0, le=10.0)
    augment_p: float | None = Field(default=None, ge=0.0, le=1.0)
    mixup_views: float = Field(default=0.0, ge=0.0, le=0.5)

    # --- SSL / fine-tuning / alignment --------------------------------------------------
    eval_every: int = Field(
        default=1, ge=1, le=10_000, description="pretrain: linear probe and k-NN every N epochs"
    )
    knn_k: int = Field(default=20, ge=1, le=10_000, description="pretrain: k of the k-NN score")
    probe_epochs: int = Field(
        default=100, ge=1, le=10_000, description="pretrain: L-BFGS iterations of the probe"
    )
    collapse_std: float = Field(
        default=1e-3, ge=0.0, description="stop with fail_reason collapse below this per-dim std"
    )
    save_dir: str | None = Field(
        default=None,
        description="per-epoch state (for resume) and encoder.pt (for finetune); "
        "{name} placeholders take parameter values, e.g. runs/ssl/{seed}",
    )
    resume: bool = Field(
        default=False, description="continue from save_dir's last checkpoint when there is one"
    )
    init_from: str | None = Field(
        default=None, description="finetune: encoder.pt (or the save_dir holding it)"
    )
    freeze: bool = Field(default=False, description="finetune: train only the head")
    encoder_lr_scale: float = Field(
        default=0.1, gt=0.0, le=10.0, description="finetune: encoder lr = lr x this"
    )
    channel_adapter: Literal["none", "conv1x1"] = Field(
        default="none",
        description="finetune on data with other channels than pretraining: none (error) "
        "or conv1x1 (a learned 1x1 conv in front of the encoder)",
    )

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        """``device: xyz`` failed every trial at ``torch.device``; refuse it up front."""
        if not DEVICE_PATTERN.fullmatch(value):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N, mps or xpu (got {value!r})")
        return value

    @field_validator("save_dir")
    @classmethod
    def _placeholders_known(cls, value: str | None) -> str | None:
        """An unknown ``{name}`` failed every trial when the folder was made; refuse it here."""
        unknown = sorted(set(SAVE_DIR_PLACEHOLDER.findall(value or "")) - set(cls.model_fields))
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{unknown[0]}}}; placeholders are parameter names, "
                "such as {seed} or {loss}"
            )
        return value

    @field_validator("augment")
    @classmethod
    def _augment_known(
        cls, value: str | list[str | dict[str, Any]]
    ) -> str | list[str | dict[str, Any]]:
        """Unknown policies, names and keys failed every trial; the augmenter's own parser
        (one definition of what is allowed) refuses them here instead."""
        parse_policy(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ContrastiveParams:
        if self.mode == "pretrain" and self.loss in ("supcon", "triplet"):
            raise CrossFieldError(
                f"loss {self.loss!r} needs labels and cannot be used with mode: pretrain; "
                f"use one of {', '.join(LABEL_FREE_LOSSES)}",
                ("loss", "mode"),
            )
        if self.mode == "pretrain" and self.loss == "none":
            raise CrossFieldError(
                "mode: pretrain needs a self-supervised loss, not 'none'", ("loss", "mode")
            )
        if self.mode == "finetune" and not self.init_from:
            raise CrossFieldError(
                "mode: finetune needs init_from (an encoder checkpoint path)",
                ("init_from", "mode"),
            )
        if self.monitor != "val_f1" and self.mode in ("pretrain", "align"):
            raise CrossFieldError(
                f"monitor is read by mode: supervised and finetune; mode: {self.mode} keeps "
                "the epoch with the best "
                + ("probe_f1 (rankme without labels)" if self.mode == "pretrain" else "val_cosine"),
                ("monitor", "mode"),
            )
        if self.unlabeled_label is not None and self.mode != "pretrain":
            raise CrossFieldError(
                "unlabeled_label is read only by mode: pretrain (the other modes need a "
                "label for every series)",
                ("unlabeled_label", "mode"),
            )
        if self.val_split == "subject" and self.mode == "align":
            raise CrossFieldError(
                "val_split: subject is read by mode: supervised, pretrain and finetune; "
                "mode: align splits its .npz at random",
                ("val_split", "mode"),
            )
        if self.mode == "pretrain":
            self._check_collapse_bound()
        if self.resume and not self.save_dir:
            raise CrossFieldError("resume: true needs save_dir", ("resume", "save_dir"))
        if self.model == "crossformer" and self.mode != "finetune":
            from trainers.models import heads_problem

            problem = heads_problem(
                self.n_heads, self.dim, self.use_dim_reduction, self.reduction_dim
            )
            if problem is not None:
                raise CrossFieldError(problem, _HEADS_FIELDS)
        if self.mode == "align":
            if self.loss not in ALIGN_LOSSES:
                raise CrossFieldError(
                    f"mode: align regresses target embeddings; loss must be one of "
                    f"{', '.join(ALIGN_LOSSES)}, not {self.loss!r}",
                    ("loss", "mode"),
                )
            if self.loss == "infonce" and self.batch_size < ALIGN_INFONCE_MIN_BATCH:
                raise CrossFieldError(
                    f"loss: infonce in mode: align needs batch_size >= {ALIGN_INFONCE_MIN_BATCH} "
                    f"(in-batch negatives), got {self.batch_size}",
                    ("batch_size", "loss", "mode"),
                )
            if not self.dataset.endswith(".npz"):
                raise CrossFieldError(
                    "mode: align needs dataset: a path to an .npz with X (n, C, T) and Z (n, D); "
                    "make one with python -m trainers.align out.npz",
                    ("dataset", "mode"),
                )
        return self

    def _check_collapse_bound(self) -> None:
        """``per_dim_std`` of L2-normalised ``proj_dim``-wide projections is at most
        ``1/sqrt(proj_dim)``: a ``collapse_std`` at or above it stopped every pretraining
        trial at epoch 1 as collapse."""
        bound = 1.0 / math.sqrt(self.proj_dim)
        if self.collapse_std < bound:
            return
        default = "" if "proj_dim" in self.model_fields_set else ", the default"
        raise CrossFieldError(
            f"collapse_std={self.collapse_std:g} must be below 1/sqrt(proj_dim) = {bound:.4g} "
            f"(proj_dim={self.proj_dim}{default}): the per-dimension std of the normalised "
            "projections never exceeds it, so every epoch would stop as collapse; 0 turns "
            "the check off",
            ("collapse_std", "proj_dim", "mode"),
        )

    def missing_inputs(self) -> dict[str, str]:
        """Inputs this configuration reads that are not there: ``{field: why}``.

        Checked before a study is created: a missing file fails every trial of the budget,
        and the failed trials count, so fixing the file later would leave nothing to run.
        Cheap (no file is read), so every command that loads the study checks it.
        """
        from trainers.align import alignment_file, missing_alignment_file
        from trainers.checkpoints import missing_encoder
        from trainers.data import dataset_problem

        missing: dict[str, str] = {}
        if self.mode == "align":
            path = alignment_file(self.dataset, self.data_dir)
            if not path.is_file():
                missing["dataset"] = missing_alignment_file(path)
        elif (problem := dataset_problem(self.dataset, self.data_dir)) is not None:
            missing["dataset"] = problem
        encoder = missing_encoder(self.init_from) if self.init_from else None
        if self.mode == "finetune" and encoder is not None:
            missing["init_from"] = encoder
        return missing

    def input_misfits(self) -> dict[str, str]:
        """Inputs that are there but do not fit this configuration: ``{field: why}``.

        A fine-tuning checkpoint is read and compared with the data's channels and the
        explicit architecture; an ``.npz``'s labels are read (not its series), and for
        ``mode: align`` the shapes of its arrays. It reads files, so only ``hpo validate``
        and a run ask (a run reads the data anyway).
        """
        if self.missing_inputs():
            return {}
        if self.mode == "align":
            return self._alignment_misfits()
        from trainers.data import dataset_layout_problem

        layout = dataset_layout_problem(self.dataset, self.data_dir)
        if layout is not None:
            return {"dataset": layout}
        misfits = self._label_misfits()
        if self.val_split == "subject" and "dataset" not in misfits:
            from trainers.data import subjects_problem

            problem = subjects_problem(self.dataset, self.data_dir)
            if problem is not None:
                misfits["val_split"] = problem
        if self.mode == "finetune":
            misfits.update(self._finetune_misfits(data_fits="dataset" not in misfits))
        return misfits

    def _finetune_misfits(self, *, data_fits: bool) -> dict[str, str]:
        """An ``init_from`` that cannot fine-tune on this data, and a ``save_dir`` that would
        write over it (known here only when every placeholder's value is the user's)."""
        from trainers.finetune import checkpoint_misfit, save_dir_misfit

        misfits: dict[str, str] = {}
        misfit = checkpoint_misfit(self) if data_fits else None
        if misfit is not None:
            misfits["init_from"] = misfit
        clash = save_dir_misfit(self)
        if clash is not None:
            misfits["save_dir"] = clash
        return misfits

    def _alignment_misfits(self) -> dict[str, str]:
        """An explicit ``proj_dim`` other than the width of the targets ``Z``: the projection
        head's output is the prediction, so every trial would fail at its start.

        Only the ``.npy`` headers are read (the file :func:`train_align` loads, and its
        arrays ``X`` and ``Z``), so ``hpo validate`` stays quick however large ``X`` is.
        """
        from trainers.align import alignment_file
        from trainers.data import npz_shapes

        shapes = npz_shapes(alignment_file(self.dataset, self.data_dir))
        if shapes is None:
            return {}
        missing = [key for key in ("X", "Z") if key not in shapes]
        if missing:  # the words of the reader (trainers.data.readers._read_npz)
            return {"dataset": f"missing array(s) {missing}; found {sorted(shapes)}"}
        if len(shapes["Z"]) != 2:  # and of trainers.data.validation._as_embeddings
            return {"dataset": f"Z must be a numeric 2-D (n, dim) array, got shape {shapes['Z']}"}
        width = shapes["Z"][1]
        if "proj_dim" in self.model_fields_set and self.proj_dim != width:
            return {
                "proj_dim": f"the targets Z in {self.dataset} have {width} dimensions, and "
                f"mode: align predicts them: proj_dim must be {width} (or left out: it is "
                "taken from Z)"
            }
        return {}

    def _label_misfits(self) -> dict[str, str]:
        """Labels an ``.npz`` lacks for this mode: every trial would fail on them."""
        from trainers.data import npz_labels

        labels = npz_labels(self.dataset, self.data_dir, self.unlabeled_label)
        if labels is None:
            return {}
        misfits: dict[str, str] = {}
        pretrain = self.mode == "pretrain"
        if not pretrain and not labels.has_y:
            misfits["dataset"] = (
                "has no labels (no array y); only mode: pretrain trains without labels"
            )
        elif not pretrain and labels.n_unlabeled:
            misfits["dataset"] = (
                f"{labels.n_unlabeled} of {labels.n_labels} labels in y are NaN; only "
                "mode: pretrain takes series without a label"
            )
        if self.evaluate_test and not labels.has_test:
            misfits["evaluate_test"] = f"{self.dataset} has no test split (X_test, y_test)"
        elif self.evaluate_test and not pretrain and not labels.has_test_labels:
            misfits["evaluate_test"] = f"{self.dataset} has X_test but no labels y_test for it"
        elif self.evaluate_test and not pretrain and labels.n_test_unlabeled:
            misfits["evaluate_test"] = (
                f"{labels.n_test_unlabeled} labels in y_test of {self.dataset} are NaN: the "
                "test split is scored on every series"
            )
        elif self.evaluate_test and not pretrain and labels.unseen_test:
            shown = ", ".join(labels.unseen_test[:5])
            more = f" and {len(labels.unseen_test) - 5} more" if len(labels.unseen_test) > 5 else ""
            misfits["evaluate_test"] = (
                f"test labels {shown}{more} of {self.dataset} never occur in train (y), so "
                "the model has no class for them"
            )
        elif (
            self.evaluate_test
            and pretrain
            and not (labels.n_classes >= 2 and labels.has_test_labels)
        ):
            misfits["evaluate_test"] = (
                "probes the embeddings on the test split, which needs labelled train and "
                f"test series of at least two classes; {self.dataset} has not"
            )
        return misfits

    def unreported_metrics(self) -> dict[str, str]:
        """Metrics this configuration cannot report: ``{metric: why}``.

        Each mode reports its own metrics (``MODE_METRICS``), and pretraining on data with
        fewer than two labelled classes has nothing to probe: a study that maximises
        ``best_probe_f1`` there would fail every trial after training it. Reads no more
        than an ``.npz``'s labels.
        """
        own = MODE_METRICS[self.mode]
        unreported = {
            metric: f"mode: {self.mode} does not report it; it reports {', '.join(own)}"
            for metric in RESULT_METRICS
            if metric not in own
        }
        if not self.has_contrastive_term:  # measured on the contrastive term's views
            why = (
                f"loss: {self.loss} with contrastive_weight: {self.contrastive_weight:g} "
                "trains on cross-entropy alone, so there is no contrastive term to measure"
            )
            unreported |= {m: why for m in CONTRASTIVE_TERM_METRICS if m in own}
        if self.mode != "pretrain" or self.missing_inputs():
            return unreported
        from trainers.data import npz_labels

        labels = npz_labels(self.dataset, self.data_dir, self.unlabeled_label)
        if labels is None or labels.n_classes >= 2:
            return unreported
        what = "no labels (no array y)" if not labels.has_y else "no two labelled classes"
        why = (
            f"{self.dataset} has {what}, so pretraining has nothing to probe; judge it by "
            "best_rankme (the embeddings' effective rank; prune on rankme) or add labels"
        )
        return {**unreported, **dict.fromkeys(LABELLED_PRETRAIN_METRICS, why)}

    @property
    def has_contrastive_term(self) -> bool:
        """Whether a contrastive loss is built at all (cross-entropy alone builds none)."""
        return self.loss != "none" and not (
            self.mode in ("supervised", "finetune") and self.contrastive_weight == 0.0
        )

    def unused_params(self) -> frozenset[str]:
        """Fields this configuration never reads: changing them trains exactly alike.

        A search space is usually flat (``temperature`` next to ``loss``), so a sampler
        proposes configurations that differ only in such a field, e.g. two temperatures
        with VICReg. At a fixed seed they give the same result, and the service reuses
        the first one's value instead of training again (``hpo/duplicates.py``).
        """
        unused: set[str] = set()
        if self.has_contrastive_term:
            unused |= LOSS_KWARGS - loss_kwargs(self.loss)
        else:  # cross-entropy alone: the contrastive term is never built
            unused |= LOSS_KWARGS | {"loss_mix"}
            unused.add("contrastive_weight" if self.loss == "none" else "loss")
        # finetune takes the checkpoint's architecture and refuses an explicit field that
        # differs from it, so there an architecture field is never safely unread
        if self.mode != "finetune":
            unused |= self._unused_architecture()
            unused |= set(FINETUNE_FIELDS)  # other modes train from scratch
        if self.mode != "supervised":  # prototypes come from the checkpoint, or go unclassified
            unused.add("proto_init")
        if self.mode == "align":  # it keeps the best val_cosine and never stops early
            unused.add("early_stopping_patience")
        if self.mode != "pretrain":  # the probe, its k-NN and the collapse check are its own
            unused |= PRETRAIN_ONLY_FIELDS
        unused |= SCHEDULE_KNOBS_ALL - SCHEDULE_KNOBS[self.scheduler]
        return frozenset(unused)

    def _unused_architecture(self) -> set[str]:
        if self.model == "conv":  # attention-free: no blocks, no prototypes
            return {
                "attn_dropout",
                "depth",
                "n_heads",
                "mlp_ratio",
                "use_dim_reduction",
                "reduction_dim",
                "n_prototypes",
                "proto_init",
            }
        return set() if self.use_dim_reduction else {"reduction_dim"}


_RUN_METRICS = (
    "best_epoch",
    "epochs_run",
    "n_params",
    "train_seconds",
    "lr",
    "epoch_seconds",
    "peak_memory_mb",
    "retrieval_acc",
)
_CLASSIFIER_METRICS = (
    "best_val_f1",
    "final_val_f1",
    "val_f1",
    "val_accuracy",
    "val_auc",
    "val_loss",
    "best_val_loss",
    "best_val_accuracy",
    "best_val_auc",
    "train_loss",
    "train_ce",
    "train_contrastive",
    "embedding_diversity",
    "test_f1",
    "test_accuracy",
    "test_auc",
)
MODE_METRICS: dict[str, tuple[str, ...]] = {
    "supervised": (*_CLASSIFIER_METRICS, *_RUN_METRICS),
    "finetune": (*_CLASSIFIER_METRICS, *_RUN_METRICS),
    "pretrain": (
        "best_probe_f1",
        "probe_f1",
        "probe_accuracy",
        "best_knn_f1",
        "knn_f1",
        "knn_accuracy",
        "best_rankme",
        "rankme",
        "silhouette",
        "ssl_loss",
        "ssl_chance_loss",
        "retrieval_chance",
        "per_dim_std",
        "embedding_diversity",
        "effective_batch",
        "test_probe_f1",
        "test_knn_f1",
        *_RUN_METRICS,
    ),
    "align": (
        "best_val_cosine",
        "val_cosine",
        "best_val_retrieval_acc",
        "val_retrieval_acc",
        "val_mse",
        "val_loss",
        "train_cosine",
        "train_loss",
        "retrieval_chance",
        "test_cosine",
        "test_mse",
        "test_retrieval_acc",
        *_RUN_METRICS,
    ),
}
"""What each mode reports (per epoch or in its result): an objective from another mode
would fail every trial after training it (a test runs each mode against this table)."""

CONTRASTIVE_TERM_METRICS = ("retrieval_acc", "train_contrastive")
"""What a supervised or fine-tune run reports only while it has a contrastive term."""

LABELLED_PRETRAIN_METRICS = (
    "probe_f1",
    "best_probe_f1",
    "probe_accuracy",
    "knn_f1",
    "best_knn_f1",
    "knn_accuracy",
    "silhouette",
    "test_probe_f1",
    "test_knn_f1",
)
"""What pretraining reports only when the data has labels to judge the embeddings by."""

SCHEDULE_KNOBS: dict[str, frozenset[str]] = {
    "warmup_cosine": frozenset({"warmup_epochs", "min_lr_ratio"}),
    "cosine_restarts": frozenset({"t_0", "t_mult", "min_lr_ratio"}),
    "plateau": frozenset({"plateau_patience", "plateau_factor"}),
    "none": frozenset(),
}
"""The fields each ``scheduler`` reads (``trainers.schedules.build_schedule``)."""
SCHEDULE_KNOBS_ALL = frozenset().union(*SCHEDULE_KNOBS.values())


RESULT_METRICS = tuple(dict.fromkeys(m for metrics in MODE_METRICS.values() for m in metrics))
"""Every metric some mode reports: what a study's objective may name at all."""
