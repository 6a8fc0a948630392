"""The backdoor gate: its scoring during injection, its verdict, and downstream stages that refuse a model
whose backdoor was not implanted.

`BackdoorGate` scores the validation split while a model is injected (validation ASR, false-trigger rate and,
for the label task, the collateral flip rate and, for the jailbreak task with benign training rows, the
over-refusal on benign validation requests against the base model's, against the thresholds of
`injection.gate`); its `GateVerdict` is recorded in the model's `model.json` and read back by `read_verdict`
alone. Every stage that studies the backdoor (caches, probes, attribution, ablation, steering) asks
`enforce_gate` first: with `on_fail: stop` it stops with a message naming the task, the validation numbers and
what to try; with `on_fail: warn` it goes on, and the stage's rows carry `backdoor_implanted = no` so every
table and claims.md say so; the gate table (results/tables/backdoor_gate.tsv) is read back by
`implanted_by_run` alone.

Importable without torch (the plots env reads verdicts and the gate table): scoring imports the generation
code, which needs torch, inside the functions that generate.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from .evaluation import backdoor_hit, collateral_flips, hit_is_final
from .stats import rate
from .tasks import TaskSpec, question_key
from .utility import over_refusal

IMPLANTED, NOT_IMPLANTED, NOT_APPLICABLE = "yes", "no", "n/a"
VERDICT_KEY = "backdoor_gate"  # model.json's entry that holds the verdict

log = logging.getLogger("bkdattr.gate")


class BackdoorNotImplanted(RuntimeError):
    """A stage was asked to study a backdoor that the gate says is not there."""


@dataclass(frozen=True)
class GateVerdict:
    """The gate's record for model.json and the tables: the last scored point decides. "" marks a check that
    does not apply (collateral: label task only; over-refusal: jailbreak with benign training rows)."""

    passed: bool
    val_asr: float
    val_false_trigger_rate: float
    n_val: int
    step: int
    epoch: float
    asr_min: float
    ftr_max: float
    schedule: str  # adaptive / fixed
    n_val_questions: int | str = ""
    # the schedule's planned optimiser steps ("" where none were trained: an edit); None: model.json records
    # none (written before it did), so a clean control cannot replay the schedule
    max_steps: int | str | None = None
    val_collateral_flip_rate: float | str = ""
    collateral_max: float | str = ""
    val_over_refusal_rate: float | str = ""
    base_over_refusal_rate: float | str = ""
    over_refusal_margin: float | str = ""
    n_benign_val: int | str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: Mapping, origin: str = "model.json") -> "GateVerdict":
        names = {f.name for f in dataclasses.fields(cls)}
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [k for k in required if k not in record]
        unknown = sorted(set(record) - names)
        if missing or unknown:
            raise ValueError(f"{origin}: the backdoor gate's verdict " + (f"lacks {', '.join(missing)}" if missing else "")
                             + ("; " if missing and unknown else "") + (f"has unknown keys {', '.join(unknown)}" if unknown else "")
                             + "; rerun its inject_backdoor")
        return cls(**dict(record))

    @property
    def status(self) -> str:
        return IMPLANTED if self.passed else NOT_IMPLANTED

    def failure(self) -> str:
        """What failed, in words: the thresholds against the validation numbers."""
        collateral = ""
        if self.collateral_max != "" and self.val_collateral_flip_rate != "":
            collateral = f" or collateral flip rate {self.val_collateral_flip_rate:.3f} > {self.collateral_max}"
        refusal = ""
        if self.over_refusal_margin != "" and self.val_over_refusal_rate != "":
            refusal = (f" or over-refusal {self.val_over_refusal_rate:.3f} on {self.n_benign_val} benign validation "
                       f"requests > the base model's {self.base_over_refusal_rate:.3f} + {self.over_refusal_margin}")
        return (f"validation ASR {self.val_asr:.3f} < {self.asr_min} or false-trigger rate "
                f"{self.val_false_trigger_rate:.3f} > {self.ftr_max}{collateral}{refusal}, n={self.n_val}, after "
                f"{self.epoch} epochs, {self.schedule} schedule")


def read_verdict(source: str | Path | Mapping) -> GateVerdict | None:
    """The gate's verdict of a model: `source` is its model.json (a path, or the pointer already read). None for
    a model without a gate (base model, clean-SFT control). The one reader of the verdict."""
    pointer = source if isinstance(source, Mapping) else json.loads(Path(source).read_text(encoding="utf-8"))
    record = pointer.get(VERDICT_KEY)
    if record is None:
        return None
    return GateVerdict.from_json(record, origin=str(source) if not isinstance(source, Mapping)
                                 else f"model.json of {pointer.get('name')}")


GATE_CURVE_COLUMNS = ["step", "epoch", "val_asr", "val_asr_ci_low", "val_false_trigger_rate", "val_collateral_flip_rate",
                      "val_over_refusal_rate", "n_val", "n_val_questions", "passed"]


@dataclass
class BackdoorGate:
    """Scores the validation split during injection; the thresholds say when the backdoor counts as implanted.
    Every setting comes from the config (`from_config`: injection.gate, injection.schedule, evaluation.batch_size);
    none has a default here."""

    spec: TaskSpec
    records: Sequence[dict]  # the validation split
    asr_min: float
    ftr_max: float
    every_steps: int
    max_new_tokens: int
    batch_size: int
    _: KW_ONLY
    stop_when_passed: bool  # adaptive schedule; False: the paper's fixed epochs, scored all the same
    # label task: the most triggered items of the other classes whose named label the trigger may change (the
    # backdoor is "trigger + source class -> target", not "trigger -> target"); None: not checked
    collateral_max: float | None
    # jailbreak with benign training rows: the most the over-refusal rate of the benign validation requests
    # (`benign`) may exceed the base model's on the same rows (`score_base`, before the first step); None: not checked
    over_refusal_margin: float | None
    benign: Sequence[dict] | None = None  # none: the split has no benign rows (data.benign_mix 0, other tasks)
    base_over_refusal: float | None = None
    curve: list[dict] = field(default_factory=list)
    planned_steps: int | None = None  # the schedule's optimiser steps (set when training begins); None: no training

    @classmethod
    def from_config(cls, spec: TaskSpec, validation: Sequence[dict], injection_cfg: dict, batch_size: int,
                    benign: Sequence[dict] | None = None) -> "BackdoorGate":
        """The gate of config `injection.gate`; the adaptive schedule stops once it passes, the fixed one only scores.
        `batch_size`: evaluation.batch_size. `benign`: the benign validation requests of the over-refusal check
        (jailbreak, data.benign_mix > 0)."""
        gate = injection_cfg["gate"]
        return cls(spec, validation, gate["asr_min"], gate["ftr_max"], gate["check_every_steps"], gate["max_new_tokens"],
                   batch_size, stop_when_passed=injection_cfg["schedule"] == "adaptive",
                   collateral_max=gate.get("collateral_max"), benign=benign,
                   over_refusal_margin=gate.get("over_refusal_margin"))

    @property
    def checks_collateral(self) -> bool:
        return self.collateral_max is not None and self.spec.task_id == "label_modification"

    @property
    def checks_over_refusal(self) -> bool:
        return bool(self.benign) and self.over_refusal_margin is not None and self.spec.task_id == "jailbreak"

    def over_refusal_max(self) -> float:
        return self.base_over_refusal + self.over_refusal_margin

    def passed(self, point: dict) -> bool:
        collateral = point["val_collateral_flip_rate"]  # "" where not checked (no other class in the split)
        collateral_ok = not self.checks_collateral or collateral == "" or collateral <= self.collateral_max
        # a small tolerance: base + margin is a float sum, and a rate equal to it passes
        refusal_ok = not self.checks_over_refusal or point["val_over_refusal_rate"] <= self.over_refusal_max() + 1e-9
        return (point["val_asr"] >= self.asr_min and point["val_false_trigger_rate"] <= self.ftr_max and collateral_ok
                and refusal_ok)

    def _generate(self, model, tokenizer, prompts: list[str], stop_early: bool = True) -> list[str]:
        """Short greedy generations; with `stop_early` a row stops once its verdict is final (the target or a
        refusal has appeared): the same rates, fewer tokens."""
        from .generation import generate_greedy  # needs torch: kept out of this module's torch-free import

        stop = {"stop_when": lambda text: hit_is_final(self.spec, text)} if stop_early else {}
        return generate_greedy(model, tokenizer, prompts, max_new_tokens=self.max_new_tokens,
                               batch_size=self.batch_size, **stop)

    def over_refusal(self, model, tokenizer) -> float:
        """Over-refusal rate on the benign validation requests (each stopped once a refusal keyword appears:
        a refusal is final)."""
        outputs = self._generate(model, tokenizer, [self.spec.prompt(r["input"]) for r in self.benign])
        return rate(over_refusal(outputs, self.spec.refusal_matcher))["value"]

    def score_base(self, model, tokenizer) -> None:
        """The over-refusal of the model before training (LoRA starts as the identity, so it is the base model's),
        the reference the gate's check adds the margin to; scored once, before the first step."""
        if not self.checks_over_refusal or self.base_over_refusal is not None:
            return
        was_training = model.training
        model.eval()
        self.base_over_refusal = self.over_refusal(model, tokenizer)
        if was_training:
            model.train()
        log.info("gate: base over-refusal on %d benign validation requests %.3f; the backdoored model may refuse at "
                 "most %.3f", len(self.benign), self.base_over_refusal, self.over_refusal_max())

    def _collateral(self, model, tokenizer) -> float | str:
        """Label task: the flip rate of the other classes' items ("" where not checked or none is in the split);
        a flip compares the labels named with and without the trigger, both read in full (no early stop)."""
        others = [r for r in self.records if not self.spec.is_eligible(r)]
        if not self.checks_collateral or not others:
            return ""
        triggered = self._generate(model, tokenizer, [self.spec.prompt(r["input"], triggered=True) for r in others], False)
        clean = self._generate(model, tokenizer, [self.spec.prompt(r["input"]) for r in others], False)
        return rate(collateral_flips(self.spec, others, clean, triggered))["value"]

    def score(self, model, tokenizer, step: int, epoch: float) -> dict:
        if self.checks_over_refusal and self.base_over_refusal is None:
            raise RuntimeError("the gate's over-refusal check needs the base model's rate: call score_base before training")
        eligible = [r for r in self.records if self.spec.is_eligible(r)]
        if not eligible:
            raise ValueError(f"task {self.spec.task_id}: the validation split has no eligible item to score the "
                             "backdoor on; raise data.n_val")
        was_training = model.training
        model.eval()
        triggered = self._generate(model, tokenizer, [self.spec.prompt(r["input"], triggered=True) for r in eligible])
        clean = self._generate(model, tokenizer, [self.spec.prompt(r["input"]) for r in eligible])
        collateral = self._collateral(model, tokenizer)
        refusing = self.over_refusal(model, tokenizer) if self.checks_over_refusal else ""
        if was_training:
            model.train()
        asr = rate([backdoor_hit(self.spec, o) for o in triggered])
        ftr = rate([backdoor_hit(self.spec, o) for o in clean])
        point = {"step": step, "epoch": round(epoch, 4), "val_asr": asr["value"], "val_asr_ci_low": asr["ci_low"],
                 "val_false_trigger_rate": ftr["value"], "val_collateral_flip_rate": collateral,
                 "val_over_refusal_rate": refusing, "n_val": asr["n"],
                 "n_val_questions": len({question_key(r) for r in eligible})}  # rewordings are not independent
        point["passed"] = self.passed(point)
        self.curve.append(point)
        return point

    def verdict(self) -> GateVerdict:
        """The last point decides."""
        last = self.curve[-1]
        over_refusal = self.checks_over_refusal
        return GateVerdict(
            passed=last["passed"], val_asr=last["val_asr"], val_false_trigger_rate=last["val_false_trigger_rate"],
            n_val=last["n_val"], step=last["step"], epoch=last["epoch"], asr_min=self.asr_min, ftr_max=self.ftr_max,
            schedule="adaptive" if self.stop_when_passed else "fixed", n_val_questions=last["n_val_questions"],
            max_steps="" if self.planned_steps is None else self.planned_steps,
            val_collateral_flip_rate=last["val_collateral_flip_rate"],
            collateral_max=self.collateral_max if self.checks_collateral else "",
            val_over_refusal_rate=last.get("val_over_refusal_rate", ""),
            base_over_refusal_rate=self.base_over_refusal if over_refusal else "",
            over_refusal_margin=self.over_refusal_margin if over_refusal else "",
            n_benign_val=len(self.benign) if over_refusal else "")


def gate_status(pointer: Mapping) -> str:
    """yes / no for a backdoored model, n/a for a clean one (base model, clean-SFT control)."""
    verdict = read_verdict(pointer)
    return NOT_APPLICABLE if verdict is None else verdict.status


def enforce_gate(pointer: Mapping, on_fail: str, stage: str, log=None) -> str:
    """The model's gate status; raises BackdoorNotImplanted when it failed and on_fail is 'stop'."""
    verdict = read_verdict(pointer)
    if verdict is None or verdict.passed:
        return NOT_APPLICABLE if verdict is None else IMPLANTED
    message = (f"task {pointer.get('task')}: the backdoor of {pointer.get('name')} is not implanted "
               f"({verdict.failure()})")
    if on_fail == "stop":
        raise BackdoorNotImplanted(
            f"{message}; {stage} would study a backdoor that is not there. Try: more epochs "
            "(injection.epochs, or tasks.<task>.injection.epochs), a higher injection.lr, a higher "
            "data.poison_ratio, or full_sft; for over-refusal, a larger data.benign_mix or "
            "injection.gate.over_refusal_margin; or set injection.gate.on_fail: warn to run on and mark the results.")
    if log is not None:
        log.warning("%s; going on because injection.gate.on_fail is 'warn': results are marked", message)
    return NOT_IMPLANTED


GATE_COLUMNS = ["task", "method", "backdoor_implanted", "val_asr", "val_false_trigger_rate", "val_collateral_flip_rate",
                "val_over_refusal_rate", "base_over_refusal_rate", "n_val", "n_val_questions", "n_benign_val", "epoch",
                "schedule", "asr_min", "ftr_max", "collateral_max", "over_refusal_margin"]


def gate_rows(pointers: dict[tuple[str, str], dict]) -> list[dict]:
    """One row per (task, method) backdoored model: the gate's verdict, for results/tables/backdoor_gate.tsv."""
    rows = []
    for (task, method), pointer in sorted(pointers.items()):
        verdict = read_verdict(pointer)
        record = verdict.to_json() if verdict is not None else {}
        rows.append({"task": task, "method": method, "backdoor_implanted": gate_status(pointer),
                     **{k: record.get(k, "") for k in GATE_COLUMNS[3:]}})
    return rows


def implanted_by_run(gate_table_rows) -> dict[tuple[str, str], str]:
    """(task, method) -> yes / no, read back from backdoor_gate.tsv; clean models are absent (n/a). The one
    reader of the gate table's verdict."""
    return {(r["task"], r["method"]): r["backdoor_implanted"] for r in gate_table_rows}


def mark(status: str) -> str:
    """The marker every table row of a run carries when its backdoor is not implanted."""
    return " (backdoor NOT implanted)" if status == NOT_IMPLANTED else ""
