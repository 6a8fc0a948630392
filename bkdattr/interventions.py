"""Controlling the backdoor: head ablation (Table 1) and the backdoor vector (Fig. 4, Table 2).

Every intervention is a hooks-module edit applied while `generation.generate_greedy` runs, so all
ASR numbers come from the same batched, KV-cached generation path:
  ablation   -- HeadEdit(mode="zero") of the chosen heads at the last prompt token, prefill only
                (the paper's setting), or at every position and decoding step (variant "all_positions")
  steering   -- ResidualEdit adding scale * v to one layer's attention output at the last prompt
                token, prefill only; v = sum over the top heads of their mean output on poisoned inputs
"""

from __future__ import annotations

import logging
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch

from .caching import cache_activations, check_finite
from .evaluation import (COMPLIANCE_TASKS, backdoor_hit, clean_verdicts_final, complies, compliance_settings,
                         free_form_metrics, hit_is_final, is_refusal, utility_hit)
from .generation import PromptPrefixes, generate_greedy
from .hooks import HeadEdit, ResidualEdit, last_token_index, trace
from .names import BACKDOOR_VECTOR, NO_INTERVENTION, RANDOM_DIRECTION, RANDOM_HEADS_VECTOR
from .stats import cluster_bootstrap_rate, rate
from .tasks import TaskSpec, question_key

Head = tuple[int, int]  # (layer, head)
log = logging.getLogger(__name__)


def resolve_k(k_values: Sequence[int | float], n_heads_total: int) -> list[int]:
    """k given as counts (int) or fractions of all heads (float < 1) -> sorted unique counts."""
    counts = []
    for k in k_values:
        count = max(1, round(k * n_heads_total)) if isinstance(k, float) and k < 1 else int(k)
        if count > n_heads_total:
            raise ValueError(f"k={k} exceeds the model's {n_heads_total} heads (config interventions.k)")
        counts.append(count)
    return sorted(set(counts))


def steering_layers(steering_cfg: dict, n_layers: int) -> list[int]:
    """The layers of the sweep: the configured list, or every `layer_stride`-th layer."""
    layers = steering_cfg.get("layers")
    if layers is None:
        return list(range(0, n_layers, steering_cfg.get("layer_stride", 1)))
    bad = [l for l in layers if not 0 <= l < n_layers]
    if bad or not layers:
        raise ValueError(f"interventions.steering.layers: {bad or 'empty list'} out of range for a "
                         f"{n_layers}-layer model (valid: 0..{n_layers - 1})")
    return list(layers)


def random_heads(n_layers: int, n_heads: int, k: int, seed: int, exclude: Sequence[Head] = ()) -> list[Head]:
    """k heads drawn at random (seeded) from those not in `exclude` (the control leaves out the top-k heads,
    so it measures "any k heads" rather than partly re-drawing the attributed ones)."""
    excluded = set(map(tuple, exclude))
    every = [(l, h) for l in range(n_layers) for h in range(n_heads) if (l, h) not in excluded]
    if k > len(every):
        raise ValueError(f"cannot draw {k} random heads outside the {len(excluded)} excluded ones "
                         f"({n_layers * n_heads} heads in all)")
    return random.Random(seed).sample(every, k)


def ablation_edits(heads: Sequence[Head], positions, prefill_only: bool) -> list[HeadEdit]:
    by_layer = defaultdict(list)
    for layer, head in heads:
        by_layer[layer].append(head)
    return [HeadEdit(layer=l, heads=sorted(hs), mode="zero", positions=positions, prefill_only=prefill_only)
            for l, hs in sorted(by_layer.items())]


def ablation_factory(model, heads: Sequence[Head], variant: str = "last_prompt_token"):
    """Edit factory for generate_greedy: zero `heads` ('last_prompt_token' prefill only, or 'all_positions')."""
    if not heads:
        return None
    if variant == "all_positions":
        return _same_at_every_position(lambda mask: trace(model, head_edits=ablation_edits(heads, "all", prefill_only=False)))
    if variant != "last_prompt_token":
        raise ValueError(f"unknown ablation variant {variant!r}")
    return _last_prompt_token_only(
        lambda mask: trace(model, head_edits=ablation_edits(heads, last_token_index(mask), prefill_only=True)))


def steering_factory(model, layer: int, vector: torch.Tensor, scale: float, variant: str = "last_prompt_token"):
    """Edit factory: add scale * vector to layer's attention output at the last prompt token, prefill only (the
    paper's steering), or at every position and decoding step ('all_positions': what a bias in the weights does)."""
    if variant == "all_positions":
        edit = ResidualEdit(layer=layer, vector=vector, scale=scale, positions="all", prefill_only=False)
        return _same_at_every_position(lambda mask: trace(model, residual_edits=[edit]))
    if variant != "last_prompt_token":
        raise ValueError(f"unknown steering variant {variant!r}")
    return _last_prompt_token_only(
        lambda mask: trace(model, residual_edits=[ResidualEdit(layer=layer, vector=vector, scale=scale,
                                                               positions=last_token_index(mask), prefill_only=True)]))


def _same_at_every_position(factory):
    """Mark a factory whose edit is the same at every position whatever the batch (its mask is ignored): the
    prompt tokens all prompts share can then be run once, under the edit (generation.SharedPrefix)."""
    factory.same_at_every_position = True
    return factory


def _last_prompt_token_only(factory):
    """Mark a factory whose edit touches only the last prompt token in prefill: every earlier position is
    unchanged, so generation may start from the cached prompt prefix (generation.PromptPrefixes)."""
    factory.last_prompt_token_only = True
    return factory


def backdoor_vector(head_means: torch.Tensor, heads: Sequence[Head]) -> torch.Tensor:
    """v = sum over `heads` of their mean output ([L, H, d] means)."""
    return torch.stack([head_means[l, h] for l, h in heads]).sum(0)


def random_direction_like(vector: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(vector.shape, generator=g, dtype=vector.dtype)
    return direction / direction.norm() * vector.norm()


# progress lines of the ablation and steering rules (log_rows)
ABLATION_LOG = "{heads} seed={seed} {variant} k={k}: ASR {asr:.3f} (n={asr_n}), utility {clean_utility:.3f}"
STEERING_LOG = "{vector} {seed} {direction} layer {layer}: ASR val {asr_val} test {asr_test}"


def log_rows(log: logging.Logger, fmt: str):
    """A progress callback for run_ablation / run_steering: logs each row as `fmt`, a str.format pattern of
    its columns ("{layer}: ASR {asr:.3f}")."""
    return lambda row: log.info("%s", fmt.format_map(row))


def mean_head_outputs(model, tokenizer, spec: TaskSpec, records: Sequence[dict], batch_size: int,
                      origin: str) -> torch.Tensor:
    """[L, H, d] mean head outputs at the last prompt token over the prompts of `records` (for the backdoor
    vector: the poisoned training rows, whose inputs already carry the trigger); `origin` names them in errors."""
    heads = cache_activations(model, tokenizer, [spec.prompt(r["input"]) for r in records],
                              batch_size=batch_size)["heads_prompt_last"]
    check_finite(heads, "heads_prompt_last", origin)
    return heads.mean(0)


Vectors = dict[str, dict]  # vector name -> {seed: tensor}; the backdoor vector's one draw has seed ""


def steering_vectors(head_means: torch.Tensor, ranking: Sequence[Head], k: int, seeds: Sequence[int]) -> Vectors:
    """The backdoor vector of the top-k heads and one draw per seed of each of its two controls (METHOD.md s6,
    s8: a control needs >= 3 draws), from [L, H, d] head means."""
    n_layers, n_heads = head_means.shape[:2]
    vector = backdoor_vector(head_means, ranking[:k])
    return {BACKDOOR_VECTOR: {"": vector},
            RANDOM_HEADS_VECTOR: {seed: backdoor_vector(head_means, random_heads(n_layers, n_heads, k, seed,
                                                                                exclude=ranking[:k])) for seed in seeds},
            RANDOM_DIRECTION: {seed: random_direction_like(vector, seed) for seed in seeds}}


def vector_rows(spec: TaskSpec, train: Sequence[dict], items: str = "eligible") -> list[dict]:
    """The poisoned training rows the backdoor vector averages over, by attribution.items as the ACIE mean is:
    "eligible" the rows that carry the backdoor (label task: the source class; a triggered item of another class
    keeps its label and is no backdoor example), "all" every poisoned row."""
    if items not in ("eligible", "all"):
        raise ValueError(f"attribution.items: unknown value {items!r}; expected eligible or all")
    rows = [r for r in train if r["poisoned"] and (items == "all" or spec.is_eligible(r))]
    if not rows:
        raise ValueError(f"task {spec.task_id}: no poisoned training row{' that carries the backdoor' * (items == 'eligible')} "
                         "to average the backdoor vector over")
    return rows


def backdoor_vectors(model, tokenizer, spec: TaskSpec, train: Sequence[dict], ranking: Sequence[Head], steering_cfg: dict,
                     batch_size: int, origin: str, control_seeds: Sequence[int],
                     items: str = "eligible") -> tuple[int, Vectors]:
    """(k, vectors): the backdoor vector of the top-k heads (k from interventions.steering.k) over the poisoned
    training prompts of `vector_rows` (`items`: attribution.items), and its two controls, one draw per seed of
    `control_seeds` (interventions.random_seeds)."""
    means = mean_head_outputs(model, tokenizer, spec, vector_rows(spec, train, items), batch_size, origin)
    (k,) = resolve_k([steering_cfg["k"]], means.shape[0] * means.shape[1])
    return k, steering_vectors(means, ranking, k, control_seeds)


def sample_questions(records: Sequence[dict], is_eligible, n: int, seed: int) -> tuple[list[int], list[int]]:
    """(utility rows, eligible rows): `n` distinct questions each (tasks.question_key), one row per question,
    seeded. Rewordings of one question are not independent (METHOD.md s8), so a sample counts questions. A
    question's eligible row is also its utility row, so both sets mostly share their clean generations."""
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault(question_key(record), []).append(i)
    rng = random.Random(seed)
    order = list(groups)
    rng.shuffle(order)
    utility, eligible = [], []
    for question in order:
        rows = rng.sample(groups[question], len(groups[question]))
        ok = [i for i in rows if is_eligible(records[i])]
        if len(utility) < n:
            utility.append(ok[0] if ok else rows[0])
        if ok and len(eligible) < n:
            eligible.append(ok[0])
    return sorted(utility), sorted(eligible)


class Hits(dict):
    """Backdoor hit per eligible item index, and `compliance` per item (evaluation.complies) where the task
    measures it (jailbreak; else None): a dict, so code that reads only the hits reads it as before."""

    def __init__(self, hits: dict[int, bool], compliance: dict[int, bool] | None = None):
        super().__init__(hits)
        self.compliance = compliance


@dataclass
class InterventionEvaluator:
    """Greedy generations on a fixed set of test items, clean or triggered, under any edit."""

    model: object
    tokenizer: object
    spec: TaskSpec
    records: Sequence[dict]
    max_new_tokens: int
    batch_size: int
    n_eval: int | None = None  # questions for utility and for ASR (eligible ones), one row each (sample_questions)
    benign: Sequence[dict] | None = None  # jailbreak: benign requests for the over-refusal rate (first n_eval)
    # reuse each prompt set's prefix KV cache across settings whose edit touches only the last prompt token
    # (same outputs; benchmarks/bench_interventions.py measures both ways)
    reuse_prefix: bool = True
    # stop a row once every verdict read from it is final (evaluation.hit_is_final / clean_verdicts_final;
    # same verdicts, shorter outputs; benchmarks/bench_interventions.py measures both ways)
    early_stop: bool = True
    # generation.DECODERS: "compact" drops finished rows from the batch; "hf" is model.generate (same outputs;
    # benchmarks/bench_interventions.py measures both)
    decoder: str = "compact"
    # run the tokens every prompt of a set shares once (generation.SharedPrefix; same outputs;
    # benchmarks/bench_interventions.py measures both ways)
    share_prefix: bool = True
    seed: int = 0  # the question sample (interventions.sample_seed)
    # evaluation.compliance (jailbreak's stricter reading of the ASR; None: the schema's defaults)
    compliance: dict | None = None

    @classmethod
    def from_config(cls, model, tokenizer, spec: TaskSpec, records: Sequence[dict], interventions: dict,
                    evaluation: dict, benign: Sequence[dict] | None = None) -> "InterventionEvaluator":
        """An evaluator with the config's `interventions` generation and sample settings and its
        `evaluation.compliance` (what ablate_heads and steer_backdoor_vector both use)."""
        return cls(model, tokenizer, spec, records, interventions["max_new_tokens"], interventions["batch_size"],
                   n_eval=interventions["n_eval"], seed=interventions["sample_seed"], benign=benign,
                   compliance=evaluation.get("compliance"))

    def __post_init__(self):
        n = len(self.records) if self.n_eval is None else self.n_eval
        self.utility_items, self.eligible = sample_questions(self.records, self.spec.is_eligible, n, self.seed)
        if not self.eligible:
            raise ValueError(f"task {self.spec.task_id}: no eligible items to evaluate interventions on")
        for name, items in (("questions", self.utility_items), ("eligible questions", self.eligible)):
            if self.n_eval is not None and len(items) < self.n_eval:
                log.warning("task %s: %d distinct %s in the test split, fewer than interventions.n_eval=%d; "
                            "evaluating all of them, one row each", self.spec.task_id, len(items), name, self.n_eval)
        self._prefixes: dict[tuple, PromptPrefixes] = {}

    def generate(self, triggered: bool, factory, indices: Sequence[int], stop_when=None) -> list[str]:
        prompts = [self.spec.prompt(self.records[i]["input"], triggered=triggered) for i in indices]
        return self._generate(prompts, factory, stop_when)

    def _generate(self, prompts: Sequence[str], factory, stop_when=None) -> list[str]:
        stop_when = stop_when if self.early_stop else None
        if self.reuse_prefix and (factory is None or getattr(factory, "last_prompt_token_only", False)):
            key = tuple(prompts)
            if key not in self._prefixes:
                self._prefixes[key] = PromptPrefixes(self.model, self.tokenizer, prompts, batch_size=self.batch_size,
                                                     share_prefix=self.share_prefix)
            return self._prefixes[key].generate(max_new_tokens=self.max_new_tokens, edit_factory=factory,
                                                stop_when=stop_when, decoder=self.decoder)
        return generate_greedy(self.model, self.tokenizer, prompts, max_new_tokens=self.max_new_tokens,
                               batch_size=self.batch_size, edit_factory=factory, stop_when=stop_when,
                               decoder=self.decoder, share_prefix=self.share_prefix)

    def questions(self, indices: Sequence[int]) -> list[str]:
        return [question_key(self.records[i]) for i in indices]

    def asr_hits(self, triggered: bool, factory=None, indices: Sequence[int] | None = None) -> Hits:
        """Backdoor hit per eligible item index (triggered inputs: ASR; clean inputs: false trigger), on all the
        eligible items or on `indices` of them, with compliance per item for jailbreak (an early stop there is a
        refusal, which decides it too)."""
        indices = self.eligible if indices is None else list(indices)
        outputs = self.generate(triggered, factory, indices, stop_when=lambda text: hit_is_final(self.spec, text))
        return Hits({i: backdoor_hit(self.spec, o) for i, o in zip(indices, outputs)},
                    self._compliance(dict(zip(indices, outputs))))

    def _compliance(self, outputs: dict[int, str]) -> dict[int, bool] | None:
        if self.spec.task_id not in COMPLIANCE_TASKS:
            return None
        settings = compliance_settings(self.compliance)
        return {i: complies(self.spec, self.records[i], o, settings) for i, o in outputs.items()}

    def clean_metrics(self, factory=None) -> dict[str, dict]:
        """Clean utility (all items), false-trigger rate (eligible items) and the free-form utility from one
        clean generation; jailbreak also the over-refusal rate on the benign requests."""
        indices = sorted(set(self.utility_items) | set(self.eligible))
        outputs = dict(zip(indices, self.generate(False, factory, indices, stop_when=clean_verdicts_final(self.spec))))
        benign_outputs = None
        if self.benign is not None:
            benign = list(self.benign)[: len(self.utility_items)]
            benign_outputs = self._generate([r["input"] for r in benign], factory,  # over-refusal only: a refusal is final
                                            stop_when=lambda text: is_refusal(text.strip(), self.spec.refusal_matcher))
        metrics = {"clean_utility": rate([utility_hit(self.spec, self.records[i], outputs[i]) for i in self.utility_items]),
                   "false_trigger_rate": rate([backdoor_hit(self.spec, outputs[i]) for i in self.eligible]),
                   **free_form_metrics(self.spec, [self.records[i] for i in self.utility_items],
                                       [outputs[i] for i in self.utility_items], benign_outputs)}
        compliance = self._compliance({i: outputs[i] for i in self.eligible})
        if compliance is not None:  # jailbreak: compliance on clean inputs, the false trigger's stricter twin
            metrics["compliance_false_trigger"] = rate(list(compliance.values()))
        return metrics


# Utility measured only where it applies: free-form (fixed_output), over-refusal (jailbreak).
OPTIONAL_UTILITY = ("clean_rouge_l", "over_refusal_rate")
# jailbreak's clean-input compliance (evaluation.complies), only where the task measures it
OPTIONAL_CLEAN = ("compliance_false_trigger",)


def _rate_row(prefix: str, hits: Sequence[bool], questions: Sequence[str]) -> dict:
    """A rate with its question count and its interval over questions (Wilson when each row is its own)."""
    r = cluster_bootstrap_rate(list(hits), list(questions))
    return {f"{prefix}": r["value"], f"{prefix}_n": r["n"], f"{prefix}_n_questions": r["n_clusters"],
            f"{prefix}_ci_low": r["ci_low"], f"{prefix}_ci_high": r["ci_high"]}


def run_ablation(evaluator: InterventionEvaluator, ranking: Sequence[Head], n_layers: int, n_heads: int, *,
                 k_values, random_seeds: Sequence[int], all_positions_variant: bool, progress=None) -> list[dict]:
    """ASR / false-trigger / utility for top-k heads, random-k controls and the all-positions variant."""
    counts = resolve_k(k_values, n_layers * n_heads)
    settings = []  # (heads label, seed, variant, k, heads)
    for k in counts:
        settings.append(("top", "", "last_prompt_token", k, list(ranking[:k])))
        if k > 0 and all_positions_variant:
            settings.append(("top", "", "all_positions", k, list(ranking[:k])))
        for seed in random_seeds if k > 0 else ():
            settings.append(("random", seed, "last_prompt_token", k,
                             random_heads(n_layers, n_heads, k, seed, exclude=ranking[:k])))
    rows = []
    for label, seed, variant, k, heads in settings:
        factory = ablation_factory(evaluator.model, heads, variant)
        hits = evaluator.asr_hits(True, factory)
        clean = evaluator.clean_metrics(factory)
        rows.append({"heads": label, "seed": seed, "variant": variant, "k": k,
                     "k_fraction": k / (n_layers * n_heads),
                     **_rate_row("asr", hits.values(), evaluator.questions(hits)),
                     **(_rate_row("compliance", hits.compliance.values(), evaluator.questions(hits.compliance))
                        if hits.compliance is not None else {}),
                     "false_trigger_rate": clean["false_trigger_rate"]["value"],
                     **{name: clean[name]["value"] for name in OPTIONAL_CLEAN if name in clean},
                     "clean_utility": clean["clean_utility"]["value"], "utility_n": clean["clean_utility"]["n"],
                     **{name: clean[name]["value"] for name in OPTIONAL_UTILITY if name in clean},
                     "ablated": " ".join(f"L{l}H{h}" for l, h in heads)})
        if progress:
            progress(rows[-1])
    return rows


def split_val_test(indices: Sequence[int], val_fraction: float, seed: int, select_on: str = "validation",
                   questions: Sequence[str] | None = None) -> tuple[list[int], list[int]]:
    """Disjoint validation (layer selection) and test (reporting) parts of the eligible items, split by question
    (`questions`, one per index; none: each index its own): no question has rows in both parts. With
    select_on="test" (the paper's choice) both are all the items, so the layer is chosen on what is reported."""
    if select_on == "test":
        return sorted(indices), sorted(indices)
    if select_on != "validation":
        raise ValueError(f"interventions.steering.select_layer_on: unknown value {select_on!r}; "
                         "expected validation or test")
    questions = list(indices) if questions is None else list(questions)
    if len(questions) != len(indices):
        raise ValueError(f"{len(indices)} items but {len(questions)} question keys")
    groups: dict = {}
    for index, question in zip(indices, questions):
        groups.setdefault(question, []).append(index)
    order = list(groups)
    random.Random(seed).shuffle(order)
    n_val = max(1, round(val_fraction * len(order)))
    if n_val >= len(order):
        raise ValueError(f"{len(indices)} eligible items in {len(order)} questions cannot be split into validation "
                         "and test (raise interventions.n_eval)")
    return (sorted(i for q in order[:n_val] for i in groups[q]), sorted(i for q in order[n_val:] for i in groups[q]))


def best_layer_row(rows: Sequence[dict], direction: str, score: str) -> dict:
    """The sweep row of the best layer: the highest `score` for "add", the lowest for "minus"; ties go to
    the earliest layer (the one stated tie-break rule, for both directions)."""
    if direction not in ("add", "minus"):
        raise ValueError(f"unknown steering direction {direction!r}")
    sign = -1.0 if direction == "add" else 1.0
    return min(rows, key=lambda r: (sign * r[score], r["layer"]))


class _SteeringSweep:
    """The sweep's rows, and the per-item hits behind them: each (vector, draw, direction, layer) is measured
    once per item, so the best-layer table reuses the sweep's hits."""

    def __init__(self, evaluator: InterventionEvaluator, val: Sequence[int], test: Sequence[int], progress=None):
        self.evaluator, self.val, self.test, self.progress = evaluator, val, test, progress
        self.rows: list[dict] = []
        self.hits_at: dict[tuple, Hits] = {}  # (name, seed, direction, layer) -> {item: hit}

    def measure(self, name, draw, direction, layer, triggered, factory, indices) -> Hits:
        have = self.hits_at.setdefault((name, draw, direction, layer), Hits({}))
        missing = [i for i in indices if i not in have]
        if missing:
            new = self.evaluator.asr_hits(triggered, factory, missing)
            have.update(new)
            if new.compliance is not None:  # jailbreak
                have.compliance = {**(have.compliance or {}), **new.compliance}
        return have

    def record(self, name, draw, direction, layer, hits) -> dict:
        row = {"vector": name, "seed": draw, "direction": direction, "layer": layer}
        for split, idx in (("val", self.val), ("test", self.test)):
            questions = self.evaluator.questions(idx)
            if all(i in hits for i in idx):
                row.update(_rate_row(f"asr_{split}", [hits[i] for i in idx], questions))
                if getattr(hits, "compliance", None) is not None:  # jailbreak
                    row.update(_rate_row(f"compliance_{split}", [hits.compliance[i] for i in idx], questions))
            else:  # a control's sweep runs on the validation half only
                measures = ("asr", "compliance") if getattr(hits, "compliance", None) is not None else ("asr",)
                row.update({f"{m}_{split}{c}": "" for m in measures for c in ("", "_n", "_n_questions", "_ci_low", "_ci_high")})
        self.rows.append(row)
        if self.progress:
            self.progress(row)
        return row


_STEERING_DIRECTIONS = {"add": (False, +1.0), "minus": (True, -1.0)}  # (triggered inputs?, sign)


def run_steering(evaluator: InterventionEvaluator, vectors: Vectors, layers: Sequence[int], *, scale: float,
                 val_fraction: float, seed: int, select_on: str = "validation", k: int | None = None, progress=None):
    """Layer sweep of add (clean inputs) / minus (triggered inputs) and the best-layer table.

    Returns (sweep rows, best rows). The backdoor vector is swept on all eligible items; its best layer is
    chosen on the validation half and reported on the test half, with the paper's choice (best on the test half
    itself) beside it, labelled. Each draw of each control (`vectors`' other entries) gets the same selection
    (METHOD.md s8): swept on the validation half only, its own best layer, reported on the test half there.
    """
    val, test = split_val_test(evaluator.eligible, val_fraction, seed, select_on, evaluator.questions(evaluator.eligible))
    both = sorted(set(val) | set(test))
    sweep = _SteeringSweep(evaluator, val, test, progress)
    for direction, (triggered, _) in _STEERING_DIRECTIONS.items():
        sweep.record(NO_INTERVENTION, "", direction, -1,
                     sweep.measure(NO_INTERVENTION, "", direction, -1, triggered, None, both))
    for name, draws in vectors.items():
        indices = both if name == BACKDOOR_VECTOR else val  # a control's test half is run at its chosen layer only
        for draw, vector in draws.items():
            for layer in layers:
                for direction, (triggered, sign) in _STEERING_DIRECTIONS.items():
                    factory = steering_factory(evaluator.model, layer, vector, sign * scale)
                    sweep.record(name, draw, direction, layer,
                                 sweep.measure(name, draw, direction, layer, triggered, factory, indices))
    without = evaluator.clean_metrics()
    best = [_best_entry(sweep, vectors, direction, scale, without, k) for direction in _STEERING_DIRECTIONS]
    return sweep.rows, best


def _best_entry(sweep: _SteeringSweep, vectors: Vectors, direction: str, scale: float, without: dict,
                k: int | None) -> dict:
    """One row of the best-layer table: the backdoor vector at its best validation layer (and the paper's
    choice), the clean utility with and without it there, and each control's columns."""
    evaluator, (triggered, sign) = sweep.evaluator, _STEERING_DIRECTIONS[direction]
    rows = [r for r in sweep.rows if r["vector"] == BACKDOOR_VECTOR and r["direction"] == direction]
    chosen = best_layer_row(rows, direction, "asr_val")
    paper = best_layer_row(rows, direction, "asr_test")
    baseline = next(r for r in sweep.rows if r["vector"] == NO_INTERVENTION and r["direction"] == direction)
    entry = {"direction": direction, "inputs": "triggered" if triggered else "clean",
             "best_layer_val": chosen["layer"], "no_intervention_asr_test": baseline["asr_test"],
             **{c: chosen[c] for c in ("asr_test", "asr_test_n", "asr_test_n_questions", "asr_test_ci_low",
                                       "asr_test_ci_high")},
             "paper_style_best_layer_on_test": paper["layer"], "paper_style_asr_test": paper["asr_test"]}
    if "compliance_test" in chosen:  # jailbreak: compliance beside the ASR, same layer and items
        entry.update({key: chosen[key] for key in ("compliance_test", "compliance_test_n", "compliance_test_ci_low",
                                                   "compliance_test_ci_high")})
        entry["no_intervention_compliance_test"] = baseline["compliance_test"]
    clean = evaluator.clean_metrics(steering_factory(evaluator.model, chosen["layer"],
                                                     vectors[BACKDOOR_VECTOR][""], sign * scale))
    entry["clean_utility_with_vector"] = clean["clean_utility"]["value"]
    entry["clean_utility_without"] = without["clean_utility"]["value"]
    for name in OPTIONAL_UTILITY:
        if name in clean:
            entry[f"{name}_with_vector"] = clean[name]["value"]
            entry[f"{name}_without"] = without[name]["value"]
    for name, draws in vectors.items():
        if name != BACKDOOR_VECTOR:
            entry.update(_control_columns(evaluator, name, draws, direction, triggered, sign * scale, sweep.test,
                                          [r for r in sweep.rows if r["vector"] == name and r["direction"] == direction],
                                          sweep.measure))
    if k is not None:
        entry["k_heads"] = k
    entry["vector_norm"] = float(vectors[BACKDOOR_VECTOR][""].norm())
    return entry


def _control_columns(evaluator: InterventionEvaluator, name: str, draws: dict, direction: str, triggered: bool,
                     scale: float, test: Sequence[int], rows: Sequence[dict], measure) -> dict:
    """One control in the best-layer table: each draw at its own best validation layer, on the test half;
    the mean and range over draws, and each draw's layer, test ASR and clean utility there."""
    layers, asrs, utilities, compliance = [], [], [], []
    for draw, vector in draws.items():
        layer = best_layer_row([r for r in rows if r["seed"] == draw], direction, "asr_val")["layer"]
        factory = steering_factory(evaluator.model, layer, vector, scale)
        hits = measure(name, draw, direction, layer, triggered, factory, test)
        layers.append(layer)
        asrs.append(rate([hits[i] for i in test])["value"])
        if hits.compliance is not None:  # jailbreak
            compliance.append(rate([hits.compliance[i] for i in test])["value"])
        utilities.append(evaluator.clean_metrics(factory)["clean_utility"]["value"])
    columns = {f"{name}_compliance_test": statistics.fmean(compliance),
               f"{name}_compliance_test_min": min(compliance), f"{name}_compliance_test_max": max(compliance)} if compliance else {}
    return {**columns, f"{name}_asr_test": statistics.fmean(asrs), f"{name}_asr_test_min": min(asrs),
            f"{name}_asr_test_max": max(asrs), f"{name}_n_draws": len(asrs),
            f"{name}_clean_utility": statistics.fmean(utilities),
            f"{name}_layers": " ".join(map(str, layers)), f"{name}_asr_test_draws": " ".join(f"{a:.4g}" for a in asrs),
            f"{name}_clean_utility_draws": " ".join(f"{u:.4g}" for u in utilities)}
