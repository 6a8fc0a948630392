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
import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from . import cleaning
from .atomic import atomic_path, write_tsv
from .attribution import read_ranking
from .defences_report import METRIC_COLUMNS, UNDEFENDED, VARIANT_COLUMNS
from .hooks import ModelSites
from .interventions import (InterventionEvaluator, ablation_factory, backdoor_vectors, random_heads, resolve_k,
                            steering_factory, steering_layers)
from .models import read_pointer, write_pointer
from .names import BACKDOOR_VECTOR
from .provenance import directory_fingerprint
from .stats import rate
from .tasks import TaskSpec
from .trigger_variants import Variant, variants_from_config
from .workflow import optional_jsonl, read_jsonl

Head = tuple[int, int]
log = logging.getLogger(__name__)

CLEANINGS = ("heads", "vector")
FIXED_KEY = {"heads": "k", "vector": "layer"}  # interventions.clean.<key>: null chooses on validation
# What a defender must know or hold to apply each (the defences table's `needs` column).
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
           progress: Callable[[dict], None] | None = None, fixed: bool = False) -> tuple[Candidate | None, list[dict]]:
    """The candidate with the lowest validation ASR whose utility drop (and over-refusal rise) stays within
    `max_utility_drop` of the undefended model's; ties go to the earlier candidate (smaller k, lower layer).
    (None, rows) when none stays within the floor and lowers the ASR. `fixed`: the one candidate given is taken
    whatever it scores (the config fixed it); the rows still say what it scored."""
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
    # a candidate must lower the ASR: one that removes nothing measurable is not worth its weight change
    allowed = [(row["asr"], i, c) for i, (row, c) in enumerate(zip(rows[1:], candidates))
               if row["within_floor"] and row["asr"] < before["asr"]]
    chosen = min(allowed, key=lambda t: (t[0], t[1]))[2] if allowed else None
    if fixed:
        (chosen,) = candidates
    for row, candidate in zip(rows[1:], candidates):
        row["chosen"] = candidate is chosen
    rows[0]["chosen"] = chosen is None
    return chosen, rows


def head_candidates(model, ranking: Sequence[Head], k_values, n_heads_total: int) -> list[Candidate]:
    """Top-k pruning for each k > 0 of interventions.k, as the all-positions ablation (what pruning equals)."""
    return [Candidate(f"k={k}", k, ablation_factory(model, list(ranking[:k]), "all_positions"))
            for k in resolve_k(k_values, n_heads_total) if k > 0]


def vector_candidates(model, vector: torch.Tensor, steering_cfg: dict, n_layers: int, scale: float) -> list[Candidate]:
    # subtracted at every position and decoding step: what the bias cleaning.add_attention_output_bias writes
    return [Candidate(f"layer {layer}", layer, steering_factory(model, layer, vector, -scale, "all_positions"))
            for layer in steering_layers(steering_cfg, n_layers)]


def evaluate_defended(model, tokenizer, spec: TaskSpec, test: Sequence[dict], variants: Sequence[Variant], *,
                      benign: Sequence[dict] | None, interventions: dict, evaluation: dict,
                      progress: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict]]:
    """(metric rows, variant rows) of a model on the test split's interventions.n_eval questions: ASR, the
    compliance reading where the task has one, false-trigger rate, clean utility, over-refusal; then the ASR
    under each trigger variant (the exact trigger's is the held-out ASR, not generated again)."""
    held_out = InterventionEvaluator.from_config(model, tokenizer, spec, test, interventions, evaluation, benign)
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
        if (variant.trigger, variant.placement) == (spec.trigger, spec.placement):
            r = metrics["asr"]
        else:  # the same questions (the sample does not depend on the trigger), another trigger
            r = rate(list(InterventionEvaluator.from_config(model, tokenizer, variant.spec(spec), test, interventions,
                                                            evaluation, benign).asr_hits(True).values()))
        variant_rows.append({"variant": variant.name, "trigger": variant.trigger, "placement": variant.placement,
                             "asr": r["value"], "successes": r["successes"], "n": r["n"], "ci_low": r["ci_low"],
                             "ci_high": r["ci_high"]})
        if progress:
            progress(f"variant {variant.name}: ASR {r['value']:.3f}")
    return metric_rows, variant_rows


@dataclass
class Cleaning:
    """What a cleaning removed and why: the chosen candidate (None: nothing within the floor), the validation rows
    of every candidate, and the weight change as words for the model card."""
    how: str
    chosen: Candidate | None
    rows: list[dict]
    removed: str
    zeroed_weights: int = 0
    heads: list[Head] | None = None
    fixed: bool = False  # the config fixed the candidate (interventions.clean.k / layer)


def clean_from_attribution(model, tokenizer, spec: TaskSpec, how: str, *, ranking: Sequence[Head], validation: Sequence[dict],
                           train: Sequence[dict], benign_validation: Sequence[dict] | None, interventions: dict,
                           attribution: dict, cache_batch_size: int, compliance: dict | None,
                           progress: Callable[[dict], None] | None = None) -> Cleaning:
    """Choose the cleaning on the validation split (`select`), then write it into the model's weights."""
    if how not in CLEANINGS:
        raise ValueError(f"unknown cleaning {how!r}; expected one of {', '.join(CLEANINGS)}")
    sites = ModelSites.of(model)
    evaluator = InterventionEvaluator(model, tokenizer, spec, validation, interventions["max_new_tokens"],
                                      interventions["batch_size"], n_eval=None, seed=interventions["sample_seed"],
                                      benign=benign_validation, compliance=compliance)
    floor, fixed = interventions["clean"]["max_utility_drop"], interventions["clean"][FIXED_KEY[how]]
    if how == "heads":
        candidates = head_candidates(model, ranking, interventions["k"] if fixed is None else [fixed],
                                     sites.n_layers * sites.n_heads)
    else:
        steer = interventions["steering"]
        _, vectors = backdoor_vectors(model, tokenizer, spec, train, ranking, steer, cache_batch_size, origin="train",
                                      control_seeds=[], items=attribution["items"])
        vector = vectors[BACKDOOR_VECTOR][""]
        candidates = vector_candidates(model, vector, steer if fixed is None else {**steer, "layers": [fixed]},
                                       sites.n_layers, steer["scale"])
    chosen, rows = select(evaluator, candidates, floor, progress, fixed=fixed is not None)
    if chosen is None:
        return Cleaning(how, None, rows, f"nothing: no candidate kept utility within {floor} of the model's and "
                        "lowered the ASR")
    if how == "heads":
        heads = list(ranking[:chosen.value])
        zeroed = cleaning.prune_heads(model, heads)
        return Cleaning(how, chosen, rows, f"the W_O slices of the top {len(heads)} head(s) "
                        f"({' '.join(f'L{l}H{h}' for l, h in heads)}), {zeroed} weights zeroed", zeroed, heads,
                        fixed is not None)
    cleaning.add_attention_output_bias(model, chosen.value, -steer["scale"] * vector)
    return Cleaning(how, chosen, rows, f"the backdoor vector of the top {steer['k']} heads (norm {vector.norm():.3f}) "
                    f"subtracted at layer {chosen.value} as a bias of its attention output projection",
                    fixed=fixed is not None)


def chosen_text(result: Cleaning, floor: float) -> str:
    """How the cleaning was chosen, for the model card and the log."""
    tried = ", ".join(row["candidate"] for row in result.rows[1:])
    if result.chosen is None:
        return f"on the validation split, none of {tried} kept clean utility within {floor} of the model's"
    (row,) = [r for r in result.rows if r["chosen"]]
    if result.fixed:
        return (f"{result.chosen.label}: fixed by interventions.clean.{FIXED_KEY[result.how]}; on the validation split "
                f"its ASR is {row['asr']:.3f} and clean utility dropped by {row['utility_drop']:.3f}")
    return (f"{result.chosen.label}: the lowest validation ASR ({row['asr']:.3f}) among {tried} whose clean utility "
            f"dropped by at most {floor} (it dropped by {row['utility_drop']:.3f})"
            + (f" and whose over-refusal rose by at most as much" if row["over_refusal_rise"] != "" else ""))


def save_model(model, tokenizer, checkpoint_dir, pointer_path, *, card: str | None, source: dict, name: str,
               made_by: str, **extra) -> None:
    """The checkpoint (with its model card as README.md), then its model.json pointer with the fingerprint."""
    with atomic_path(checkpoint_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
    write_pointer(pointer_path, checkpoint_dir, name, source=source["path"], task=source.get("task"),
                  method=source.get("method"), made_by=made_by, fingerprint=directory_fingerprint(checkpoint_dir),
                  **extra)


def clean_training_rows(train: Sequence[dict], n: int, seed: int) -> list[dict]:
    """A defender's clean set: `n` rows of the training split that carry no trigger and are not benign-mix rows
    (a seeded sample, in split order)."""
    clean = [r for r in train if not r.get("poisoned") and not r.get("benign")]
    if len(clean) < n:
        raise ValueError(f"defences.finetune.n = {n}: the training split has only {len(clean)} clean rows")
    keep = set(random.Random(seed).sample(range(len(clean)), n))
    return [r for i, r in enumerate(clean) if i in keep]


def apply_defence(name: str, model, tokenizer, spec: TaskSpec, *, heads_cleaning: dict, train: Sequence[dict],
                  settings: dict, injection: dict, seed: int):
    """(model, what was removed) for a standard defence written as a checkpoint: `finetune` (LoRA SFT on a clean
    set, merged), `magnitude` (as many weights as the head cleaning zeroed), `random_heads` (as many heads, drawn
    outside them: the control). `heads_cleaning` is the cleaned_heads pointer's "cleaning" record."""
    if name == "finetune":
        cfg = settings["finetune"]
        rows = clean_training_rows(train, cfg["n"], seed)
        result = finetune_clean(model, tokenizer, spec, rows, injection={**injection, "lr": cfg["lr"]},
                                steps=cfg["steps"], seed=seed)
        return result, f"{cfg['steps']} LoRA SFT steps on {len(rows)} clean training rows (lr {cfg['lr']}), merged"
    heads = [tuple(h) for h in heads_cleaning["heads"]]
    if name == "magnitude":
        n = int(heads_cleaning["zeroed_weights"])
        if n == 0:
            return model, "nothing (the head cleaning zeroed no weight)"
        cleaning.magnitude_prune(model, n)
        return model, f"the {n} smallest-magnitude decoder linear weights (as many as cleaned_heads zeroed)"
    if name == "random_heads":
        sites = ModelSites.of(model)
        drawn = random_heads(sites.n_layers, sites.n_heads, len(heads), seed, exclude=heads) if heads else []
        zeroed = cleaning.prune_heads(model, drawn)
        return model, (f"the W_O slices of {len(drawn)} random head(s) outside the cleaned ones "
                       f"({' '.join(f'L{l}H{h}' for l, h in drawn) or 'none'}), {zeroed} weights zeroed")
    raise ValueError(f"unknown defence {name!r}; checkpoint defences: finetune, magnitude, random_heads")


def finetune_clean(model, tokenizer, spec: TaskSpec, rows: Sequence[dict], *, injection: dict, steps: int, seed: int):
    """The clean fine-tuning defence: the injection recipe's LoRA SFT (fixed schedule of `steps` optimiser steps)
    on the defender's clean rows, merged; the model it returns."""
    from .injection.sft import build_examples, train_backdoor  # trl and peft: only this defence trains

    examples = build_examples(tokenizer, spec, rows, injection["max_length"])
    return train_backdoor(model, tokenizer, examples, method="lora_sft", injection_cfg={**injection, "schedule": "fixed"},
                          seed=seed, max_steps=steps).model


# ---------------------------------------------------------------- the rules' bodies (scripts stay a few lines)
CARD_COLUMNS = ["candidate", "asr", "clean_utility", "utility_drop", "over_refusal_rate", "over_refusal_rise",
                "within_floor", "chosen"]
INFO_COLUMNS = ["seconds", "needs", "removed"]


def run_clean_model(model, tokenizer, spec: TaskSpec, how: str, pointer: dict, inputs, out, params, log) -> None:
    """Rule clean_model: select on validation, edit the weights, save the checkpoint, its card and the sweep."""
    start = time.perf_counter()
    result = clean_from_attribution(
        model, tokenizer, spec, how, ranking=read_ranking(inputs.ranking), validation=read_jsonl(inputs.val),
        train=read_jsonl(inputs.train), benign_validation=optional_jsonl(inputs, "benign_val"),
        interventions=params.interventions, attribution=params.attribution,
        cache_batch_size=params.probes["cache_batch_size"], compliance=params.evaluation.get("compliance"),
        progress=lambda r: log.info("%s: validation ASR %.3f, utility %.3f (drop %.3f)", r["candidate"], r["asr"],
                                    r["clean_utility"], r["utility_drop"]))
    seconds = time.perf_counter() - start
    chosen = chosen_text(result, params.interventions["clean"]["max_utility_drop"])
    card = cleaning.model_card(source=str(inputs.model), task=spec.task_id, method=pointer.get("method", ""), how=how,
                               removed=result.removed, chosen=chosen, numbers=result.rows, columns=CARD_COLUMNS)
    save_model(model, tokenizer, out.checkpoint, out.pointer, card=card, source=pointer,
               name=f"{pointer['name']}+cleaned_{how}", made_by="clean_model", seconds=round(seconds, 1),
               cleaning={"how": how, "chosen": result.chosen.label if result.chosen else "",
                         "heads": [list(h) for h in result.heads or []], "zeroed_weights": result.zeroed_weights,
                         "removed": result.removed, "chosen_because": chosen})
    write_tsv(out.selection, [{"task": spec.task_id, "method": pointer.get("method", ""), "cleaning": how, **row}
                              for row in result.rows], SELECTION_COLUMNS)
    log.info("cleaned (%s): %s; %s; checkpoint at %s", how, result.removed, chosen, out.checkpoint)


def run_defend_model(model, tokenizer, spec: TaskSpec, defence: str, pointer: dict, inputs, out, params, log) -> None:
    """Rule defend_model: apply a checkpoint defence, save it with its card."""
    sized_by = read_pointer(inputs.cleaned_heads)["cleaning"] if "cleaned_heads" in inputs.keys() else {}
    start = time.perf_counter()
    model, removed = apply_defence(defence, model, tokenizer, spec, heads_cleaning=sized_by, train=read_jsonl(inputs.train),
                                   settings=params.defences, injection=params.injection, seed=params.seed)
    seconds = time.perf_counter() - start
    card = cleaning.model_card(source=str(inputs.model), task=spec.task_id, method=pointer.get("method", ""),
                               how=defence, removed=removed, chosen=f"the defence's own settings (defences.{defence})",
                               numbers=[], columns=[])
    save_model(model, tokenizer, out.checkpoint, out.pointer, card=card, source=pointer,
               name=f"{pointer['name']}+{defence}", made_by="defend_model", seconds=round(seconds, 1),
               cleaning={"how": defence, "removed": removed})
    log.info("defence %s: %s (%.1f s); checkpoint at %s", defence, removed, seconds, out.checkpoint)


def run_evaluate_defence(model, tokenizer, spec: TaskSpec, defence: str, pointer: dict, inputs, out, params, log) -> None:
    """Rule evaluate_defence: held-out measures and trigger variants of one (defended) model."""
    seconds = 0.0 if defence == UNDEFENDED else float(pointer.get("seconds", 0.0))
    removed = pointer.get("cleaning", {}).get("removed", "-")
    if defence == "int8":
        start = time.perf_counter()
        model = cleaning.quantize_int8(model)
        seconds, removed = time.perf_counter() - start, "every nn.Linear's weights rounded to int8 (dynamic)"
    variants = variants_from_config(spec, params.variants)
    metric_rows, variant_rows = evaluate_defended(model, tokenizer, spec, read_jsonl(inputs.test), variants,
                                                  benign=optional_jsonl(inputs, "benign"),
                                                  interventions=params.interventions, evaluation=params.evaluation,
                                                  progress=log.info)
    run = {"task": spec.task_id, "method": pointer.get("method", ""), "defence": defence}
    write_tsv(out.metrics, [{**run, **row} for row in metric_rows], METRIC_COLUMNS)
    write_tsv(out.variants, variant_rows, VARIANT_COLUMNS[3:])
    write_tsv(out.info, [{"seconds": round(seconds, 1), "needs": KNOWLEDGE[defence], "removed": removed}], INFO_COLUMNS)
    for row in metric_rows:
        log.info("%s %s: %s = %.3f (n=%d)", spec.task_id, defence, row["metric"], row["value"], row["n"])
    log.info("wrote %s and %s", out.metrics, out.variants)
