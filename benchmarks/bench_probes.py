"""Probe training: the 30 per-layer MLP probes one layer at a time (train_mlp_probe, the path before commit b0629db)
against all layers trained together (train_mlp_probes, the workflow's path), on a real activation cache of a
workflow run, in one process, one path after the other.

Reported: seconds per path and their ratio, and the equality check: per layer, the train / validation / test
accuracies of both paths; the MLP ILCA matrix (every probe scored on every layer's test rows); the largest
difference of the probe weights. The SVM probes are the same code on both paths and are left out.
    python benchmarks/bench_probes.py --results results --task fixed_output --cache-model lora_sft --threads 1
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common import parser, timed

from bkdattr.atomic import read_tsv, write_tsv_union


def load_features(results: Path, task: str, model: str, split_by: str = "by_item"):
    from bkdattr.caching import load_cache

    pointer = json.loads((results / "models" / (model if model == "base" else f"{task}/{model}") / "model.json").read_text())
    cache = load_cache(results / f"cache/{task}/{model}/activations.safetensors",
                       results / f"cache/{task}/{model}/activations.json", model_name=pointer["name"], task=task)
    labels = cache["labels"].numpy().astype(np.int64)
    groups = cache["groups"].numpy() if split_by == "by_item" else np.arange(len(labels))
    return cache["resid_probe"].numpy().astype(np.float32), labels, groups


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="a workflow run's results/ (its activation caches)")
    p.add_argument("--cache-model", dest="model_key", default="lora_sft", help="whose activation cache: base or an injection method")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    import torch

    from bkdattr.probes import layer_seeds, split_groups, train_mlp_probe, train_mlp_probes

    torch.set_num_threads(args.threads)
    features, labels, groups = load_features(Path(args.results), args.task, args.model_key)
    split = split_groups(groups, args.seed, labels=labels)
    tr, va, te = split["train"], split["val"], split["test"]
    n_layers = features.shape[1]
    seeds = layer_seeds(args.seed, n_layers)  # as the workflow's layer_probe_results
    by_layer = features.transpose(1, 0, 2)

    def per_layer():
        return [train_mlp_probe(features[tr, l], labels[tr], features[va, l], labels[va], seed=seeds[l],
                                epochs=args.epochs) for l in range(n_layers)]

    def all_layers():
        return train_mlp_probes(by_layer[:, tr], labels[tr], by_layer[:, va], labels[va], seeds=seeds, epochs=args.epochs)

    alone, t_alone = timed(per_layer)
    together, t_together = timed(all_layers)

    def scores(probes):
        accs = [(m.accuracy(features[tr, l], labels[tr]), m.accuracy(features[va, l], labels[va]),
                 m.accuracy(features[te, l], labels[te])) for l, m in enumerate(probes)]
        ilca = np.array([[m.accuracy(features[te, j], labels[te]) for j in range(n_layers)] for m in probes])
        return accs, ilca

    (acc_a, ilca_a), (acc_b, ilca_b) = scores(alone), scores(together)
    weight_diff = max((a - b).abs().max().item() for pa, pb in zip(alone, together)
                      for a, b in zip(pa.state_tensors().values(), pb.state_tensors().values()))
    row = {"task": args.task, "model": args.model_key, "layers": n_layers, "epochs": args.epochs,
           "n_train": len(tr), "threads": args.threads,
           "per_layer_s": round(t_alone, 2), "all_layers_s": round(t_together, 2), "ratio": round(t_alone / t_together, 2),
           "layers_with_equal_accuracies": sum(a == b for a, b in zip(acc_a, acc_b)),
           "ilca_mlp_cells_equal": int((ilca_a == ilca_b).sum()), "ilca_mlp_cells": ilca_a.size,
           "max_ilca_mlp_diff": float(np.abs(ilca_a - ilca_b).max()), "max_weight_diff": weight_diff}
    print("\t".join(f"{k}={v}" for k, v in row.items()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "bench_probes.tsv"  # one row per task and model: earlier rows of other caches are kept
    earlier = [r for r in read_tsv(table) if (r["task"], r["model"]) != (args.task, args.model_key)] if table.exists() else []
    write_tsv_union(table, earlier + [row])


if __name__ == "__main__":
    main()
