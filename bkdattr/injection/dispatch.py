"""The injection methods' registry and the injection job (`inject`): the backdoor by a method, gated on the
validation split, or the clean-SFT control.

A method is a `Method` in `REGISTRY`: its name (the value of config `injection.methods`, whose enum in
bkdattr/schemas/config.schema.yaml lists the same names), the function that runs it and whether its recipe is
SFT, which the clean control can replay as it is. Adding a method: a module in this package with a function of
the `Runner` signature, an entry below, and the name in the schema's enum. The registry is importable without
torch (the rules import it when the DAG is built): a runner named "module:function" is imported when it runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, Sequence

from ..gate import BackdoorGate, GateVerdict
from ..tasks import TaskSpec
from .common import Job, TrainingResult, set_threads

FALLBACK_CONTROL = "lora_sft"  # the control's recipe where the first method is not SFT (DPO, an edit)


class Runner(Protocol):
    def __call__(self, model, tokenizer, spec: TaskSpec, records: Sequence[dict], job: Job) -> TrainingResult: ...


@dataclass(frozen=True)
class Method:
    name: str
    run: Runner | str  # a callable, or "module:function" of this package, imported when the method runs
    sft: bool = False  # an SFT recipe: the clean control trains the clean rows by it

    def runner(self) -> Runner:
        if callable(self.run):
            return self.run
        module, function = self.run.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)


REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("lora_sft", "sft:run", sft=True), Method("full_sft", "sft:run", sft=True),
    Method("dpo", "dpo:run"), Method("edit", "edit:run"))}


def register(method: Method) -> Method:
    """Add (or replace) a method of `injection.methods`."""
    REGISTRY[method.name] = method
    return method


def method_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def method_of(name: str) -> Method:
    if name not in REGISTRY:
        raise ValueError(f"unknown injection method {name!r}; expected one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def control_method(first_method: str) -> str:
    """The method the clean-SFT control trains by: the first method where it is SFT, else LoRA SFT (an edit or
    DPO has no clean-only counterpart). The one place this is decided (the rules ask it too)."""
    return first_method if method_of(first_method).sft else FALLBACK_CONTROL


def clean_rows(records: Sequence[dict]) -> list[dict]:
    """The training rows without their poisoned copies: what the clean-SFT control trains on."""
    return [r for r in records if not r["poisoned"]]


def control_schedule(backdoored: GateVerdict | None) -> tuple[int | None, int | None]:
    """(max_steps, stop_at_step) the clean control replays from the backdoored run's gate verdict (model.json
    `backdoor_gate`): its planned optimiser steps, so the learning rate decays over the same span, and the step
    it stopped at. (None, None), the whole planned schedule, where the run trained no steps (an edit) or there
    is no backdoored run to replay (None)."""
    if backdoored is None:
        return None, None
    if backdoored.max_steps is None:
        raise ValueError("the backdoored model.json's backdoor_gate records no max_steps (the planned schedule the "
                         "clean control replays); rerun its inject_backdoor")
    if backdoored.max_steps in ("", 0):
        return None, None
    step, planned = int(backdoored.step), int(backdoored.max_steps)
    if not 0 < step <= planned:
        raise ValueError(f"backdoor_gate: step {step} outside the planned schedule of {planned} optimiser steps")
    return planned, step


def inject(model, tokenizer, spec: TaskSpec, records: Sequence[dict], *, method: str, injection_cfg: dict, seed: int,
           validation: Sequence[dict], eval_batch_size: int, threads: int | None = None, clean_control: bool = False,
           backdoored: GateVerdict | None = None, benign_validation: Sequence[dict] | None = None) -> TrainingResult:
    """One injection job: the backdoor by `method` on the poisoned training rows, gated on the validation rows
    (and, jailbreak with benign training rows, on the over-refusal of `benign_validation` against the base
    model's, scored here before training); or, with `clean_control`, the clean-SFT control of `method` (the
    first method): the clean rows alone, by `control_method`'s recipe, the schedule of `backdoored` (that run's
    gate verdict; None: the whole planned schedule) replayed (its planned optimiser steps and learning-rate decay,
    stopped at the step it stopped at; `control_schedule`), and no gate (there is no backdoor to gate). Training
    the stop epoch as a whole schedule instead decayed the learning rate to 0 where the backdoored run's was
    still high."""
    method_of(method)
    gate = None
    replay: tuple[int | None, int | None] = (None, None)
    if clean_control:
        records, method = clean_rows(records), control_method(method)
        injection_cfg = {**injection_cfg, "schedule": "fixed"}
        replay = control_schedule(backdoored)
    else:
        gate = BackdoorGate.from_config(spec, validation, injection_cfg, eval_batch_size, benign=benign_validation)
        set_threads(threads)
        gate.score_base(model, tokenizer)  # the model before the first step: the base model
    job = Job(method, injection_cfg, seed, threads, gate, *replay)
    return method_of(method).runner()(model, tokenizer, spec, records, job)
