"""Backdoor probes (method section 3): per-layer MLP / SVM probes and inter-layer transfer (ILCA).

Input is one model x task: ``features`` [N, L, d] (residual stream after each layer's input norm
at the last user token), ``labels`` [N] (1 = triggered) and ``groups`` [N] (source item id).
Every split is made over groups, so a probe is never tested on the twin of one of its training rows,
and the same test items are used for every layer and for the ILCA matrices (the official code drew a
fresh split for ILCA, which leaked training rows into the diagonal).
Nothing here pickles: the MLP is saved as plain tensors (safetensors), the SVM is not persisted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from tqdm import tqdm

from .gate import NOT_APPLICABLE
from .stats import wilson_interval


def split_groups(groups, seed: int, fractions=(0.6, 0.2, 0.2), *, labels=None) -> dict[str, np.ndarray]:
    """Row indices for "train"/"val"/"test", split 6:2:2 over groups (not rows), deterministic in seed.

    If ``labels`` is given, also check that train holds both classes (a probe cannot learn otherwise).
    """
    groups = np.asarray(groups)
    uniq = np.unique(groups)  # sorted, so the permutation below does not depend on row order
    n_train = int(round(fractions[0] * len(uniq)))
    n_val = int(round(fractions[1] * len(uniq)))
    counts = {"train": n_train, "val": n_val, "test": len(uniq) - n_train - n_val}
    if len(uniq) < 5 or min(counts.values()) < 1:
        raise ValueError(f"too few groups to split: {len(uniq)} groups -> {counts} (need >= 5, each split >= 1)")
    perm = np.random.default_rng(seed).permutation(uniq)
    parts = {"train": perm[:n_train], "val": perm[n_train : n_train + n_val], "test": perm[n_train + n_val :]}
    split = {name: np.flatnonzero(np.isin(groups, g)) for name, g in parts.items()}
    if labels is not None:
        y = np.asarray(labels)[split["train"]]
        n_pos = int((y == 1).sum())
        if n_pos == 0 or n_pos == len(y):
            raise ValueError(f"train split needs both classes: {len(y) - n_pos} clean, {n_pos} triggered rows")
    return split


def _mlp(d: int, hidden: int, dropout: float) -> torch.nn.Sequential:
    # The paper's probe: d -> 100 -> 1, ReLU, dropout 0.2; the sigmoid lives in the loss / threshold.
    return torch.nn.Sequential(
        torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout), torch.nn.Linear(hidden, 1)
    )


def _as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


@dataclass
class MLPProbe:
    """A trained MLP probe plus the train-split standardisation it expects.

    Applied to another layer's activations (ILCA) it still uses its own layer's mean/std: the probe
    is a fixed function of raw activations, and transfer asks whether that function carries over.
    """

    net: torch.nn.Sequential
    mean: torch.Tensor
    std: torch.Tensor

    def logits(self, x) -> torch.Tensor:
        self.net.eval()
        with torch.no_grad():
            return self.net((_as_tensor(x) - self.mean) / self.std).squeeze(-1)

    def predict(self, x) -> np.ndarray:
        return (self.logits(x) > 0).numpy()  # sigmoid(z) > 0.5  <=>  z > 0

    def accuracy(self, x, y) -> float:
        return float(np.mean(self.predict(x) == np.asarray(y).astype(bool)))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        state = {f"net.{k}": v.detach().clone().contiguous() for k, v in self.net.state_dict().items()}
        return state | {"mean": self.mean.clone(), "std": self.std.clone()}

    @classmethod
    def from_state_tensors(cls, state: dict[str, torch.Tensor]) -> MLPProbe:
        hidden, d = state["net.0.weight"].shape
        net = _mlp(d, hidden, dropout=0.0)  # dropout is inactive at inference anyway
        net.load_state_dict({k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")})
        return cls(net.eval(), state["mean"].float(), state["std"].float())


def train_mlp_probe(x_train, y_train, x_val, y_val, *, seed: int, epochs: int, batch_size: int = 16,
                    lr: float = 1e-3, hidden: int = 100, dropout: float = 0.2) -> MLPProbe:
    """Adam + BCE, batch 16, shuffled each epoch; keep the epoch with the best val accuracy (earliest on ties)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    x, y = _as_tensor(x_train), _as_tensor(y_train)
    mean, std = x.mean(0), x.std(0, correction=0).clamp_min(1e-6)
    xs = (x - mean) / std
    # fork_rng: init and dropout draw from the global RNG; seed it locally so callers' RNG is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = MLPProbe(_mlp(x.shape[1], hidden, dropout), mean, std)
        opt = torch.optim.Adam(probe.net.parameters(), lr=lr)
        loss_fn = torch.nn.BCEWithLogitsLoss()  # sigmoid + BCE, numerically stable
        shuffle = torch.Generator().manual_seed(seed)
        best_acc, best_state = -1.0, None
        for _ in range(epochs):
            probe.net.train()
            for idx in torch.randperm(len(xs), generator=shuffle).split(batch_size):
                opt.zero_grad()
                loss_fn(probe.net(xs[idx]).squeeze(-1), y[idx]).backward()
                opt.step()
            acc = probe.accuracy(x_val, y_val)
            if acc > best_acc:  # strict: ties keep the earlier epoch
                best_acc = acc
                best_state = {k: v.detach().clone() for k, v in probe.net.state_dict().items()}
    probe.net.load_state_dict(best_state)
    probe.net.eval()
    return probe


def _seeded_inits(seeds, d: int, hidden: int, dropout: float):
    """Per seed: the probe's initial net, its dropout generator and its batch-order generator, drawn as
    train_mlp_probe draws them."""
    inits, dropout_rngs, shuffles = [], [], []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            inits.append(_mlp(d, hidden, dropout))
            # train_mlp_probe draws its dropout masks from the global RNG right after the init: same stream
            dropout_rngs.append(torch.Generator().set_state(torch.get_rng_state()))
        shuffles.append(torch.Generator().manual_seed(seed))
    return inits, dropout_rngs, shuffles


def _stacked_params(inits) -> list:
    """The nets' weights stacked over layers, leaves for one fused Adam: w1 [L, d, hidden], b1 [L, 1, hidden],
    w2 [L, hidden, 1], b2 [L, 1, 1]."""
    stacked = lambda index, attr: torch.stack([getattr(net[index], attr).detach() for net in inits])  # noqa: E731
    return [stacked(0, "weight").transpose(1, 2).contiguous().requires_grad_(),
            stacked(0, "bias")[:, None].contiguous().requires_grad_(),
            stacked(3, "weight").transpose(1, 2).contiguous().requires_grad_(),
            stacked(3, "bias")[:, None].contiguous().requires_grad_()]


def _load_probe(net, best: list, mean, std) -> MLPProbe:
    """One layer's probe from its slice [w1, b1, w2, b2] of the stacked best weights."""
    net.load_state_dict({"0.weight": best[0].T, "0.bias": best[1][0], "3.weight": best[2].T, "3.bias": best[3][0]})
    return MLPProbe(net.eval(), mean, std)


def train_mlp_probes(x_train, y_train, x_val, y_val, *, seeds, epochs: int, batch_size: int = 16,
                     lr: float = 1e-3, hidden: int = 100, dropout: float = 0.2) -> list[MLPProbe]:
    """One probe per layer, all layers trained together: x_train [L, N, d] and x_val [L, Nv, d] (the same rows
    at every layer), labels shared. Layer l's probe follows `train_mlp_probe(..., seed=seeds[l])` step by step:
    its own init, batch order and dropout masks (drawn from that seed's generators in the same order), Adam
    on its own slice of the stacked weights (fused: one kernel for every layer), its own best epoch. Batched
    matmuls round differently from one layer's (weights within 2e-5 after 100 epochs on real caches), so
    this matches it to rounding, not bit for bit; benchmarks/bench_probes.py checks the accuracies and the
    ILCA matrix on real caches. Why: a probe's step is tiny (16 rows, d -> 100 -> 1), so one layer at a time
    spends its time in per-op overhead; the layers' 30 steps now cost about one."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    x, y = _as_tensor(x_train), _as_tensor(y_train)
    if x.ndim != 3 or len(seeds) != x.shape[0]:
        raise ValueError(f"x_train must be [layers, rows, d] with one seed per layer, got {tuple(x.shape)} and "
                         f"{len(seeds)} seeds")
    n_layers, n_rows, d = x.shape
    mean, std = x.mean(1), x.std(1, correction=0).clamp_min(1e-6)
    xs = (x - mean[:, None]) / std[:, None]
    xv = (_as_tensor(x_val) - mean[:, None]) / std[:, None]
    yv = torch.as_tensor(np.asarray(y_val)).bool()
    inits, dropout_rngs, shuffles = _seeded_inits(seeds, d, hidden, dropout)
    params = _stacked_params(inits)
    w1, b1, w2, b2 = params
    opt = torch.optim.Adam(params, lr=lr, fused=True)
    layer_index = torch.arange(n_layers)[:, None]
    keep = 1.0 - dropout
    best_acc = torch.full((n_layers,), -1.0)
    best = [p.detach().clone() for p in params]
    for _ in tqdm(range(epochs), desc="MLP probes (all layers)", file=sys.stderr, mininterval=5):
        order = torch.stack([torch.randperm(n_rows, generator=g) for g in shuffles])  # [L, N]
        for idx in order.split(batch_size, dim=1):
            opt.zero_grad()
            hidden_out = torch.relu(torch.baddbmm(b1, xs[layer_index, idx], w1))
            # nn.Dropout in training: input * bernoulli(keep) / keep, one [rows, hidden] mask per layer
            masks = torch.stack([torch.empty(idx.shape[1], hidden).bernoulli_(keep, generator=g) for g in dropout_rngs])
            logits = torch.baddbmm(b2, hidden_out * masks.div_(keep), w2).squeeze(-1)
            # each layer's loss is its own batch mean, as BCEWithLogitsLoss; summing keeps the layers' gradients apart
            torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx], reduction="none").mean(1).sum().backward()
            opt.step()
        with torch.no_grad():
            val_logits = torch.baddbmm(b2, torch.relu(torch.baddbmm(b1, xv, w1)), w2).squeeze(-1)
            acc = ((val_logits > 0) == yv).float().mean(1)
            better = acc > best_acc  # strict: ties keep the earlier epoch
            best_acc = torch.where(better, acc, best_acc)
            for kept, param in zip(best, params):
                kept[better] = param[better]
    return [_load_probe(net, [p[layer] for p in best], mean[layer], std[layer]) for layer, net in enumerate(inits)]


def train_svm_probe(x_train, y_train):
    """RBF SVM on standardised inputs (sklearn defaults, as the paper)."""
    return make_pipeline(StandardScaler(), SVC(kernel="rbf", C=1.0, gamma="scale")).fit(x_train, y_train)


def _svm_acc(svm, x, y) -> float:
    return float(np.mean(svm.predict(x) == np.asarray(y)))


def _check_inputs(features, labels, groups):
    features = np.asarray(features, dtype=np.float32)
    labels, groups = np.asarray(labels), np.asarray(groups)
    if features.ndim != 3:
        raise ValueError(f"features must be [N, L, d], got shape {features.shape}")
    if labels.shape != (features.shape[0],) or groups.shape != (features.shape[0],):
        raise ValueError(f"labels {labels.shape} and groups {groups.shape} must be [{features.shape[0]}]")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0/1, got values {np.unique(labels).tolist()}")
    bad = np.argwhere(~np.isfinite(features).all(axis=2))
    if len(bad):
        r, l = (int(v) for v in bad[0])
        kind = "NaN" if np.isnan(features[r, l]).any() else "inf"
        raise ValueError(f"{kind} in activations at row {r}, layer {l}")
    return features, labels.astype(np.int64), groups


def layer_seeds(seed: int, n_layers: int) -> list[int]:
    """The MLP probe seed of each layer: a distinct init, batch order and dropout stream per layer."""
    return [int(np.random.SeedSequence([seed, l]).generate_state(1)[0]) for l in range(n_layers)]


def layer_probe_results(features, labels, groups, *, seed: int, epochs: int) -> dict:
    """Per-layer MLP and SVM probes and the ILCA matrices, on one group split shared by all layers."""
    features, labels, groups = _check_inputs(features, labels, groups)
    split = split_groups(groups, seed, labels=labels)
    tr, va, te = split["train"], split["val"], split["test"]
    n_layers = features.shape[1]
    rows, svms = [], []
    by_layer = features.transpose(1, 0, 2)  # [L, N, d]
    mlps = train_mlp_probes(by_layer[:, tr], labels[tr], by_layer[:, va], labels[va], seeds=layer_seeds(seed, n_layers),
                            epochs=epochs)
    for l in tqdm(range(n_layers), desc="SVM probes", file=sys.stderr, mininterval=5):
        x, mlp = features[:, l], mlps[l]
        svm = train_svm_probe(x[tr], labels[tr])
        for name, acc in (("mlp", mlp.accuracy), ("svm", lambda a, b: _svm_acc(svm, a, b))):
            test_acc = acc(x[te], labels[te])
            low, high = accuracy_interval(test_acc, len(te))
            rows.append({"layer": l, "probe": name, "train_acc": acc(x[tr], labels[tr]),
                         "val_acc": acc(x[va], labels[va]), "test_acc": test_acc,
                         "test_acc_ci_low": low, "test_acc_ci_high": high,
                         "n_train": len(tr), "n_val": len(va), "n_test": len(te)})
        svms.append(svm)
    # ILCA[i, j]: probe trained on layer i, scored on layer j's test rows (same items for every j).
    ilca_mlp = np.array([[m.accuracy(features[te, j], labels[te]) for j in range(n_layers)] for m in mlps])
    ilca_svm = np.array([[_svm_acc(s, features[te, j], labels[te]) for j in range(n_layers)] for s in svms])
    return {"accuracy": rows, "ilca_mlp": ilca_mlp, "ilca_svm": ilca_svm,
            "mlp_states": {l: m.state_tensors() for l, m in enumerate(mlps)}, "split": split}


def accuracy_interval(accuracy: float, n: int) -> tuple[float, float]:
    """Wilson 95% interval of an accuracy measured on n test rows (the probe test split is small)."""
    return wilson_interval(round(accuracy * n), n)


def ilca_long(ilca: np.ndarray, n_test: int, probe: str) -> list[dict]:
    """ILCA cells as rows with their Wilson 95% intervals (every cell is scored on the same n_test rows)."""
    rows = []
    for i, row in enumerate(np.asarray(ilca, dtype=float)):
        for j, acc in enumerate(row):
            low, high = accuracy_interval(float(acc), n_test)
            rows.append({"probe": probe, "train_layer": i, "test_layer": j, "accuracy": float(acc),
                         "n_test": n_test, "ci_low": low, "ci_high": high})
    return rows


def summarise(accuracy_rows, ilca_mlp, ilca_svm, threshold: float) -> dict:
    """Headline numbers: where the trigger first becomes linearly/non-linearly readable, and transfer."""
    def test_accs(probe):
        return sorted((r["layer"], r["test_acc"]) for r in accuracy_rows if r["probe"] == probe)

    def first_ge(probe):
        return next((layer for layer, acc in test_accs(probe) if acc >= threshold), None)

    def mean_offdiag(m):
        m = np.asarray(m, dtype=float)
        return float(m[~np.eye(len(m), dtype=bool)].mean()) if len(m) > 1 else None

    mlp = test_accs("mlp")
    best_layer, best_acc = max(mlp, key=lambda t: (t[1], -t[0])) if mlp else (None, None)  # earliest on ties
    n_test = next((int(r["n_test"]) for r in accuracy_rows if "n_test" in r), None)
    low, high = accuracy_interval(best_acc, n_test) if best_acc is not None and n_test else (None, None)
    return {"first_layer_mlp_ge_threshold": first_ge("mlp"), "first_layer_svm_ge_threshold": first_ge("svm"),
            "mean_offdiag_ilca_mlp": mean_offdiag(ilca_mlp), "mean_offdiag_ilca_svm": mean_offdiag(ilca_svm),
            "best_layer_mlp": best_layer, "max_test_acc_mlp": best_acc,
            "max_test_acc_mlp_ci_low": low, "max_test_acc_mlp_ci_high": high, "n_test": n_test}


# ---------------------------------------------------------------- what train_probes and probe_summary write
ACCURACY_COLUMNS = ["layer", "probe", "train_acc", "val_acc", "test_acc", "test_acc_ci_low", "test_acc_ci_high",
                    "n_train", "n_val", "n_test"]


def probe_groups(cache: dict, split: str) -> np.ndarray:
    """The group of each cached row for the probe split: by_item keeps an item's clean and triggered rows
    together; by_row (the official code) puts every row on its own."""
    return cache["groups"].numpy() if split == "by_item" else np.arange(len(cache["labels"]))


def ilca_intervals(results: dict) -> list[dict]:
    """Both ILCA matrices of layer_probe_results as rows with their Wilson intervals."""
    n_test = len(results["split"]["test"])
    return ilca_long(results["ilca_mlp"], n_test, "mlp") + ilca_long(results["ilca_svm"], n_test, "svm")


def mlp_probe_tensors(results: dict) -> dict:
    """Every layer's MLP probe as flat safetensors entries layer{l}.{name}."""
    return {f"layer{layer}.{name}": t for layer, state in results["mlp_states"].items() for name, t in state.items()}


def summary_rows(runs: dict, implanted: dict, threshold: float) -> list[dict]:
    """probe_summary's rows: per (task, model) run, from its accuracy TSV rows and ILCA matrices (as read back),
    summarise's numbers (None written 'none') and whether its backdoor was implanted."""
    rows = []
    for (task, model), (accuracy_rows, ilca_mlp, ilca_svm) in runs.items():
        accuracy = [{**r, "layer": int(r["layer"]), "test_acc": float(r["test_acc"]), "n_test": int(r["n_test"])}
                    for r in accuracy_rows]
        summary = summarise(accuracy, ilca_mlp, ilca_svm, threshold)
        rows.append({"task": task, "model": model, "backdoor_implanted": implanted.get((task, model), NOT_APPLICABLE),
                     **{k: ("none" if v is None else v) for k, v in summary.items()}})
    return rows
