"""Removing the backdoor: the cleanings chosen on the validation split, and one evaluation of any defended model.

The cleanings come from the attribution (bkdattr.cleaning writes them as weights):
  heads   -- the top-k heads of the ranking pruned; k is the candidate (interventions.k) with the lowest
             validation ASR among those whose clean utility stays within interventions.clean.max_utility_drop of
             the undefended model's (jailbreak: the over-refusal rate may rise by as much, no more)
  vector  -- the backdoor vector (interventions.steering.k heads) subtracted at one layer, at every position:
             the layer is chosen the same way among the steering sweep's layers
No candidate within the floor: nothing is removed (k = 0 / no layer), and the card says so.

A defended model is scored on the test split's interventions.n_eval questions (the questions Table 1 uses) and on
each trigger variant (bkdattr.trigger_variants), with the same greedy decoding and early stops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .hooks import ResidualEdit, trace
from .interventions import InterventionEvaluator, ablation_factory, resolve_k, steering_layers
from .stats import rate
from .tasks import TaskSpec
from .trigger_variants import Variant

Head = tuple[int, int]
log = logging.getLogger(__name__)

CLEANINGS = ("heads", "vector")
# the standard defences beside the cleanings (BackdoorLLM's defence box), and the control
DEFENCES = ("finetune", "magnitude", "int8", "random_heads")
UNDEFENDED = "undefended"
# What a defender must know or hold to apply each (the "what the defender needed to know").
KNOWLEDGE = {
    UNDEFENDED: "-",
    "cleaned_heads": "trigger and target (the attribution), clean validation rows",
    "cleaned_vector": "trigger (the poisoned prompts the vector averages), clean validation rows",
    "finetune": "clean training rows",
    "magnitude": "nothing (the number of weights is matched to cleaned_heads)",
    "int8": "nothing",
    "random_heads": "nothing (control: as many heads as cleaned_heads, drawn at random)",
}
SELECTION_COLUMNS = ["task", "method", "cleaning", "candidate", "asr", "clean_utility", "utility_drop",
                     "over_refusal_rate", "over_refusal_rise", "within_floor", "chosen"]


def vector_factory(model, layer: int, vector: torch.Tensor, scale: float):
    """Edit factory: subtract scale * vector from layer's attention output at every position and decoding step
    (what the bias written by cleaning.add_attention_output_bias does)."""
    edit = ResidualEdit(layer=layer, vector=vector, scale=-scale, positions="all", prefill_only=False)

    def factory(mask):
        return trace(model, residual_edits=[edit])

    factory.same_at_every_position = True  # the shared prompt prefix may run once, under the edit
    return factory


@dataclass
class Candidate:
    label: str  # "k=8" / "layer 12"
    value: int  # k or the layer
    factory: object


def _score(evaluator: InterventionEvaluator, factory) -> dict:
    hits = evaluator.asr_hits(True, factory)
    clean = evaluator.clean_metrics(factory)
    over = clean.get("over_refusal_rate", {}).get("value")
    return {"asr": rate(list(hits.values()))["value"], "clean_utility": clean["clean_utility"]["value"],
            "over_refusal_rate": "" if over is None else over}


def select(evaluator: InterventionEvaluator, candidates: Sequence[Candidate], max_utility_drop: float,
           progress: Callable[[dict], None] | None = None) -> tuple[Candidate | None, list[dict]]:
    """The candidate with the lowest validation ASR whose utility drop (and over-refusal rise) stays within
    `max_utility_drop` of the undefended model's; ties go to the earlier candidate (smaller k, lower layer).
    (None, rows) when none stays within the floor."""
    before = _score(evaluator, None)
    rows = [{"candidate": "none", **before, "utility_drop": 0.0, "over_refusal_rise": 0.0 if before["over_refusal_rate"] != "" else "",
             "within_floor": True}]
    for candidate in candidates:
        scores = _score(evaluator, candidate.factory)
        drop = before["clean_utility"] - scores["clean_utility"]
        rise = (scores["over_refusal_rate"] - before["over_refusal_rate"]) if scores["over_refusal_rate"] != "" else ""
        within = drop <= max_utility_drop + 1e-12 and (rise == "" or rise <= max_utility_drop + 1e-12)
        rows.append({"candidate": candidate.label, **scores, "utility_drop": drop, "over_refusal_rise": rise,
                     "within_floor": within})
        if progress:
            progress(rows[-1])
    allowed = [(row["asr"], i, c) for i, (row, c) in enumerate(zip(rows[1:], candidates)) if row["within_floor"]]
    chosen = min(allowed, key=lambda t: (t[0], t[1]))[2] if allowed else None
    for row, candidate in zip(rows[1:], candidates):
        row["chosen"] = candidate is chosen
    rows[0]["chosen"] = chosen is None
    return chosen, rows


def head_candidates(model, ranking: Sequence[Head], k_values, n_heads_total: int) -> list[Candidate]:
    """Top-k pruning for each k > 0 of interventions.k, as the all-positions ablation (what pruning equals)."""
    return [Candidate(f"k={k}", k, ablation_factory(model, list(ranking[:k]), "all_positions"))
            for k in resolve_k(k_values, n_heads_total) if k > 0]


def vector_candidates(model, vector: torch.Tensor, steering_cfg: dict, n_layers: int, scale: float) -> list[Candidate]:
    return [Candidate(f"layer {layer}", layer, vector_factory(model, layer, vector, scale))
            for layer in steering_layers(steering_cfg, n_layers)]


def evaluate_defended(model, tokenizer, spec: TaskSpec, test: Sequence[dict], variants: Sequence[Variant], *,
                      benign: Sequence[dict] | None, settings: dict, compliance: dict | None,
                      progress: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict]]:
    """(metric rows, variant rows) of a model on the test split's interventions.n_eval questions: ASR, the
    compliance reading where the task has one, false-trigger rate, clean utility, over-refusal; then the ASR
    under each trigger variant (the exact trigger first)."""
    def evaluator(task_spec):
        return InterventionEvaluator(model, tokenizer, task_spec, test, settings["max_new_tokens"],
                                     settings["batch_size"], n_eval=settings["n_eval"], seed=settings["sample_seed"],
                                     benign=benign, compliance=compliance)

    held_out = evaluator(spec)
    hits = held_out.asr_hits(True)
    clean = held_out.clean_metrics()
    metrics = {"asr": rate(list(hits.values())),
               **({"compliance": rate(list(hits.compliance.values()))} if hits.compliance is not None else {}),
               **{name: clean[name] for name in ("false_trigger_rate", "clean_utility", "over_refusal_rate")
                  if name in clean}}
    metric_rows = [{"metric": name, "value": r["value"], "successes": r["successes"], "n": r["n"],
                    "ci_low": r["ci_low"], "ci_high": r["ci_high"]} for name, r in metrics.items()]
    variant_rows = []
    for variant in variants:
        r = rate(list(evaluator(variant.spec(spec)).asr_hits(True).values()))
        variant_rows.append({"variant": variant.name, "trigger": variant.trigger, "placement": variant.placement,
                             "asr": r["value"], "successes": r["successes"], "n": r["n"], "ci_low": r["ci_low"],
                             "ci_high": r["ci_high"]})
        if progress:
            progress(f"variant {variant.name}: ASR {r['value']:.3f}")
    return metric_rows, variant_rows
