"""Does SSL pretraining help? Linear probe on a pretrained vs a randomly initialised encoder.

Both encoders are the *same* network: the random one is exactly the initialisation the
pretraining run starts from (same seed), so the only difference is SimCLR training. The
probe (logistic regression on frozen, standardised embeddings) is fit on the labelled
train split and scored on the validation split and on the held-out test split (other
subjects). The pretrained encoder is the one after the last epoch: no selection on
validation, so the test figure is not optimistic.

    python -m benchmarks.ssl_probe                # the figures in docs/ssl.md
    python -m benchmarks.ssl_probe --epochs 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from trainers.building import build_model, load_splits
from trainers.contrastive import train
from trainers.params import ContrastiveParams
from trainers.pretrain import encode, ssl_scores
from trainers.runtime import resolve_device, seed_everything


def random_init_scores(params: dict[str, Any]) -> dict[str, float]:
    """Probe and k-NN scores of the untrained encoder that ``train(params)`` would start from."""
    p = ContrastiveParams.model_validate(params)
    device = resolve_device(p.device)
    seed_everything(p.seed)  # as train_pretrain does before building the model
    data = load_splits(p).to_tensors(device)
    model = build_model(p, data.n_channels, data.n_classes).to(device)
    train_z, _ = encode(model, data.x_train, p.eval_batch_size, None)
    val_z, _ = encode(model, data.x_val, p.eval_batch_size, None)
    assert data.x_test is not None and data.y_test is not None
    test_z, _ = encode(model, data.x_test, p.eval_batch_size, None)
    val = ssl_scores(train_z, data.y_train, val_z, data.y_val, data.n_classes, p)
    test = ssl_scores(train_z, data.y_train, test_z, data.y_test, data.n_classes, p)
    return {
        "probe_f1": float(val["probe_f1"]),
        "knn_f1": float(val["knn_f1"]),
        "test_probe_f1": float(test["probe_f1"]),
        "test_knn_f1": float(test["knn_f1"]),
    }


def main(argv: list[str] | None = None) -> int:
    """Pretrain once, probe both encoders, print the figures and their ratio."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ssl_probe", description=__doc__)
    parser.add_argument("--model", default="conv")
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--augment", default="default")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=1000, help="synthetic train windows")
    parser.add_argument("--n-test", type=int, default=600, help="synthetic test windows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    params: dict[str, Any] = {
        "mode": "pretrain",
        "dataset": "synthetic_har",
        "synthetic_n_train": args.n_train,
        "synthetic_n_test": args.n_test,
        "model": args.model,
        "dim": args.dim,
        "proj_dim": 32,
        "proto_proj": "mlp",
        "loss": "infonce",
        "temperature": args.temperature,
        "augment": args.augment,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "eval_every": args.epochs,  # one evaluation, of the final encoder
        "evaluate_test": True,
        "seed": args.seed,
        "device": args.device,
    }
    started = time.perf_counter()
    random = random_init_scores(params)
    pretrained = train(params)
    figures = {
        "random_probe_f1": random["probe_f1"],
        "pretrained_probe_f1": pretrained["probe_f1"],
        "random_test_probe_f1": random["test_probe_f1"],
        "pretrained_test_probe_f1": pretrained["test_probe_f1"],
        "random_test_knn_f1": random["test_knn_f1"],
        "pretrained_test_knn_f1": pretrained["test_knn_f1"],
        "ratio_test_probe_f1": pretrained["test_probe_f1"] / random["test_probe_f1"],
        "error_ratio_test": (1 - pretrained["test_probe_f1"]) / (1 - random["test_probe_f1"]),
        "ssl_loss": pretrained["ssl_loss"],
        "ssl_chance_loss": pretrained["ssl_chance_loss"],
        "seconds": time.perf_counter() - started,
    }
    print(f"setting: {json.dumps({k: v for k, v in vars(args).items() if k != 'json'})}")
    print(
        f"linear probe macro F1, validation:  random {random['probe_f1']:.3f}  "
        f"pretrained {pretrained['probe_f1']:.3f}"
    )
    print(
        f"linear probe macro F1, test:        random {random['test_probe_f1']:.3f}  "
        f"pretrained {pretrained['test_probe_f1']:.3f}  "
        f"ratio {figures['ratio_test_probe_f1']:.3f}  "
        f"(error ratio {figures['error_ratio_test']:.2f})"
    )
    print(
        f"k-NN macro F1, test:                random {random['test_knn_f1']:.3f}  "
        f"pretrained {pretrained['test_knn_f1']:.3f}"
    )
    print(
        f"SSL loss {pretrained['ssl_loss']:.3f} (collapse level {pretrained['ssl_chance_loss']:.3f}); "
        f"{figures['seconds']:.0f} s"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(figures, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
