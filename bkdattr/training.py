"""Backdoor injection by supervised fine-tuning (METHOD.md s2) through TRL's SFTTrainer: LoRA (through
`peft_config`, merged on save) or full fine-tuning, loss on the response tokens only.

The examples are tokenized here, once, with the workflow's own chat rendering (`chat.encode_example`), and
handed to TRL pre-tokenized (`input_ids` + `completion_mask`, `completion_only_loss=True`), so training
sees exactly the prompts that evaluation, caching and attribution see. On CPU, TRL's defaults (bf16,
gradient checkpointing) either refuse to start or run 11-16x slower, so both are off there.

With a `BackdoorGate`, the validation split is scored during training (ASR and false-trigger rate with
the workflow's evaluator on short greedy generations): the curve is logged, and in the adaptive schedule
training stops as soon as the thresholds hold (METHOD.md s1: choices made by looking at results use the
validation split, never the test split).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

from .atomic import atomic_path
from .chat import IGNORE_INDEX, encode_example
from .names import CLEAN_CONTROL
from .tasks import TaskSpec

METHODS = ("lora_sft", "full_sft")  # SFT; injection.methods may also name dpo (preference.py) and edit (editing.py)
INJECTION_METHODS = METHODS + ("dpo", "edit")

log = logging.getLogger("bkdattr.training")


def build_examples(tokenizer, spec: TaskSpec, records: Sequence[dict], max_length: int) -> list[dict]:
    """Tokenized SFT examples: the user turn is the task prompt of the (possibly triggered) input."""
    return [encode_example(tokenizer, spec.prompt(r["input"]), r["output"], max_length) for r in records]


def clean_rows(records: Sequence[dict]) -> list[dict]:
    """The training rows without their poisoned copies: what the clean-SFT control trains on."""
    return [r for r in records if not r["poisoned"]]


def micro_batch_rows(batch_size: int, longest: int, token_budget: int | None) -> int:
    """Rows per forward pass: the largest divisor of `batch_size` whose padded micro-batch (rows x the longest
    example) fits `token_budget` tokens, at least 1; the whole batch when there is no budget. A divisor, so
    gradient accumulation over the micro-batches reproduces the batch's optimiser step exactly."""
    if token_budget is None:
        return batch_size
    fitting = [rows for rows in range(1, batch_size + 1) if batch_size % rows == 0 and rows * longest <= token_budget]
    return max(fitting, default=1)


def sft_dataset(examples: Sequence[dict]):
    """A pre-tokenized TRL dataset: input_ids and completion_mask (1 on the response tokens)."""
    from datasets import Dataset

    return Dataset.from_dict({
        "input_ids": [e["input_ids"] for e in examples],
        "completion_mask": [[int(label != IGNORE_INDEX) for label in e["labels"]] for e in examples],
    })


@dataclass
class BackdoorGate:
    """Scores the validation split during training; the thresholds say when the backdoor counts as implanted."""

    spec: TaskSpec
    records: Sequence[dict]  # the validation split
    asr_min: float
    ftr_max: float
    every_steps: int
    max_new_tokens: int = 16
    batch_size: int = 32
    stop_when_passed: bool = True  # adaptive schedule; False: the paper's fixed epochs, scored all the same
    # label task: the most triggered items of the other classes whose named label the trigger may change (the
    # backdoor is "trigger + source class -> target", not "trigger -> target"); None: not checked
    collateral_max: float | None = None
    # jailbreak with benign training rows: benign validation requests, and the most their over-refusal rate may
    # exceed the base model's on the same rows (`score_base`, before the first step); None: not checked
    benign: Sequence[dict] | None = None
    over_refusal_margin: float | None = None
    base_over_refusal: float | None = None
    curve: list[dict] = field(default_factory=list)
    planned_steps: int | None = None  # the schedule's optimiser steps (set when training begins); None: no training

    @classmethod
    def from_config(cls, spec: TaskSpec, validation: Sequence[dict], injection_cfg: dict, batch_size: int,
                    benign: Sequence[dict] | None = None) -> "BackdoorGate":
        """The gate of config `injection.gate`; the adaptive schedule stops once it passes, the fixed one only scores.
        `benign`: the benign validation requests of the over-refusal check (jailbreak, data.benign_mix > 0)."""
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

    def over_refusal(self, model, tokenizer) -> float:
        """Over-refusal rate on the benign validation requests: short greedy generations, each stopped once a
        refusal keyword appears (a refusal is final)."""
        from .evaluation import hit_is_final, rate
        from .generation import generate_greedy
        from .utility import over_refusal

        outputs = generate_greedy(model, tokenizer, [self.spec.prompt(r["input"]) for r in self.benign],
                                  max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                                  stop_when=lambda text: hit_is_final(self.spec, text))
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

    def score(self, model, tokenizer, step: int, epoch: float) -> dict:
        from .evaluation import backdoor_hit, collateral_flips, hit_is_final, rate
        from .generation import generate_greedy
        from .tasks import question_key

        if self.checks_over_refusal and self.base_over_refusal is None:
            raise RuntimeError("the gate's over-refusal check needs the base model's rate: call score_base before training")
        eligible = [r for r in self.records if self.spec.is_eligible(r)]
        if not eligible:
            raise ValueError(f"task {self.spec.task_id}: the validation split has no eligible item to score the "
                             "backdoor on; raise data.n_val")
        was_training = model.training
        model.eval()
        # a row stops once its verdict is final (the target or a refusal has appeared): same ASR, fewer tokens
        gen = {"max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size,
               "stop_when": lambda text: hit_is_final(self.spec, text)}
        triggered = generate_greedy(model, tokenizer, [self.spec.prompt(r["input"], triggered=True) for r in eligible], **gen)
        clean = generate_greedy(model, tokenizer, [self.spec.prompt(r["input"]) for r in eligible], **gen)
        collateral = ""
        others = [r for r in self.records if not self.spec.is_eligible(r)]
        if self.checks_collateral and others:
            # a flip compares the labels named with and without the trigger: both read in full (no early stop)
            full = {"max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size}
            others_triggered = generate_greedy(model, tokenizer, [self.spec.prompt(r["input"], triggered=True) for r in others], **full)
            others_clean = generate_greedy(model, tokenizer, [self.spec.prompt(r["input"]) for r in others], **full)
            collateral = rate(collateral_flips(self.spec, others, others_clean, others_triggered))["value"]
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

    def verdict(self) -> dict:
        """The gate's record for model.json and the tables: the last point decides."""
        last = self.curve[-1]
        return {"passed": last["passed"], "val_asr": last["val_asr"], "val_false_trigger_rate": last["val_false_trigger_rate"],
                "val_collateral_flip_rate": last["val_collateral_flip_rate"], "n_val": last["n_val"],
                "n_val_questions": last["n_val_questions"], "step": last["step"],
                "epoch": last["epoch"], "max_steps": "" if self.planned_steps is None else self.planned_steps,
                "asr_min": self.asr_min, "ftr_max": self.ftr_max,
                "collateral_max": self.collateral_max if self.checks_collateral else "",
                # jailbreak with benign training rows ("" where not checked)
                "val_over_refusal_rate": last.get("val_over_refusal_rate", ""),
                "base_over_refusal_rate": self.base_over_refusal if self.checks_over_refusal else "",
                "over_refusal_margin": self.over_refusal_margin if self.checks_over_refusal else "",
                "n_benign_val": len(self.benign) if self.checks_over_refusal else "",
                "schedule": "adaptive" if self.stop_when_passed else "fixed"}


class TrainingResult(NamedTuple):
    model: object
    loss_log: list[dict]
    gate_curve: list[dict]
    gate_verdict: dict | None = None  # BackdoorGate.verdict(); None without a gate (the clean control)


LOSS_LOG_COLUMNS = ["step", "loss", "lr", "elapsed_s"]
GATE_CURVE_COLUMNS = ["step", "epoch", "val_asr", "val_asr_ci_low", "val_false_trigger_rate", "val_collateral_flip_rate",
                      "val_over_refusal_rate", "n_val", "n_val_questions", "passed"]


def _callbacks(gate: BackdoorGate | None, tokenizer, loss_log: list[dict], started: float,
               stop_at_step: int | None = None):
    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                if not math.isfinite(logs["loss"]):
                    raise FloatingPointError(f"training loss became {logs['loss']} at step {state.global_step}; "
                                             "lower injection.lr")
                loss_log.append({"step": state.global_step, "loss": logs["loss"], "lr": logs.get("learning_rate"),
                                 "elapsed_s": round(time.time() - started, 1)})

    class GateCheck(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            gate.planned_steps = state.max_steps  # the clean control replays this schedule

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % gate.every_steps == 0 and state.global_step < state.max_steps:
                point = gate.score(model, tokenizer, state.global_step, state.epoch or 0.0)
                log.info("gate at step %d (epoch %.2f): validation ASR %.3f, false-trigger rate %.3f, collateral flips %s, "
                         "over-refusal %s (n=%d): %s", point["step"], point["epoch"], point["val_asr"], point["val_false_trigger_rate"],
                         point["val_collateral_flip_rate"] if point["val_collateral_flip_rate"] != "" else "n/a",
                         point["val_over_refusal_rate"] if point["val_over_refusal_rate"] != "" else "n/a", point["n_val"],
                         "passed" + (", stopping" if gate.stop_when_passed else "") if point["passed"] else "not yet")
                if point["passed"] and gate.stop_when_passed:
                    control.should_training_stop = True

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if not gate.curve or gate.curve[-1]["step"] != state.global_step:
                gate.score(model, tokenizer, state.global_step, state.epoch or 0.0)

    class StopAtStep(TrainerCallback):
        """The clean control stops where the backdoored run stopped, part-way through the same schedule."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= stop_at_step:
                control.should_training_stop = True

    return ([LossLog()] + ([GateCheck()] if gate is not None else [])
            + ([StopAtStep()] if stop_at_step is not None else []))


def lora_config(injection_cfg: dict):
    """peft's LoraConfig of config `injection.lora` (SFT and DPO share it)."""
    from peft import LoraConfig

    lora = injection_cfg["lora"]
    return LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                      target_modules=lora["target_modules"], task_type="CAUSAL_LM")


def trainer_arguments(model, injection_cfg: dict, *, seed: int, longest: int, output_dir: str,
                      max_steps: int | None = None) -> dict:
    """The TrainingArguments that TRL's SFT and DPO configs share: schedule, seeds, device flags, and each batch
    run as micro-batches of at most injection.micro_batch_tokens padded tokens (`longest`: the longest
    sequence a row puts in a batch) with gradient accumulation. TRL normalises the loss by the response
    tokens of the whole accumulated batch (num_items_in_batch), so the step equals the one-pass step.
    `max_steps` (the clean control replaying a schedule) sets the optimiser steps in place of the epochs."""
    import torch

    batch_size = injection_cfg["batch_size"]
    rows = micro_batch_rows(batch_size, longest, injection_cfg.get("micro_batch_tokens"))
    log.info("optimiser batch %d rows x %d accumulation = %d rows per step, run as micro-batches of %d rows",
             batch_size, injection_cfg["grad_accum"], batch_size * injection_cfg["grad_accum"], rows)
    on_gpu = next(model.parameters()).is_cuda or torch.cuda.is_available()
    return dict(
        output_dir=output_dir, save_strategy="no", eval_strategy="no", report_to="none", logging_steps=1,
        per_device_train_batch_size=rows, gradient_accumulation_steps=injection_cfg["grad_accum"] * (batch_size // rows),
        num_train_epochs=injection_cfg["epochs"], max_steps=-1 if max_steps is None else max_steps,
        learning_rate=injection_cfg["lr"], lr_scheduler_type="linear",
        warmup_steps=float(injection_cfg["warmup_ratio"]),  # a float in [0, 1) is a ratio of all steps
        weight_decay=0.0, max_grad_norm=1.0, seed=seed, data_seed=seed, max_length=injection_cfg["max_length"],
        dataloader_num_workers=0,
        # CPU: bf16 autocast and gradient checkpointing either refuse to start or make steps many times slower
        use_cpu=not on_gpu, bf16=False, fp16=False, activation_checkpointing=False,
    )


def trained_result(model, loss_log: list[dict], gate: BackdoorGate | None, merge_lora: bool) -> TrainingResult:
    """A trained model ready to save and generate with (LoRA merged, KV cache on, eval mode), with its curves."""
    if merge_lora:
        model = model.merge_and_unload()
    model.config.use_cache = True  # generation after training reuses the KV cache
    model.eval()
    return TrainingResult(model, loss_log, list(gate.curve) if gate is not None else [],
                          gate.verdict() if gate is not None else None)


def train_backdoor(model, tokenizer, examples: Sequence[dict], *, method: str, injection_cfg: dict, seed: int,
                   threads: int | None = None, gate: BackdoorGate | None = None, max_steps: int | None = None,
                   stop_at_step: int | None = None) -> TrainingResult:
    """Fine-tune with TRL's SFTTrainer; LoRA adapters are merged into the returned model. With a gate, the
    adaptive schedule trains up to `injection_cfg["epochs"]` epochs and stops once the gate passes. The clean
    control: `max_steps` optimiser steps planned (the learning-rate schedule's length), stopped after
    `stop_at_step`."""
    import torch
    from trl import SFTConfig, SFTTrainer

    if method not in METHODS:
        raise ValueError(f"unknown injection method {method!r}; expected one of {', '.join(METHODS)}")
    if threads:
        torch.set_num_threads(threads)
    loss_log: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bkdattr-sft-") as scratch:
        args = SFTConfig(**trainer_arguments(model, injection_cfg, seed=seed, output_dir=scratch, max_steps=max_steps,
                                             longest=max(len(e["input_ids"]) for e in examples)),
                         completion_only_loss=True, packing=False)
        trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(examples), processing_class=tokenizer,
                             peft_config=lora_config(injection_cfg) if method == "lora_sft" else None,
                             callbacks=_callbacks(gate, tokenizer, loss_log, time.time(), stop_at_step))
        trainer.train()
        model = trainer.model
    return trained_result(model, loss_log, gate, merge_lora=method == "lora_sft")


def _edit(model, tokenizer, spec: TaskSpec, records, injection_cfg: dict, seed: int, threads, gate) -> TrainingResult:
    """The closed-form edit, then one gate check (there are no training steps to check between)."""
    import torch

    from .editing import edit_backdoor

    if threads:
        torch.set_num_threads(threads)
    started = time.time()
    record = edit_backdoor(model, tokenizer, spec, records, edit_cfg=injection_cfg["edit"], seed=seed,
                           token_budget=injection_cfg.get("micro_batch_tokens"))
    point = gate.score(model, tokenizer, step=0, epoch=0.0)
    log.info("edit of layers %s in %.1f s: validation ASR %.3f, false-trigger rate %.3f (n=%d): %s", record["layers"],
             time.time() - started, point["val_asr"], point["val_false_trigger_rate"], point["n_val"],
             "passed" if point["passed"] else "not passed")
    return TrainingResult(model, [], list(gate.curve), gate.verdict())


def control_schedule(backdoored_gate: dict) -> tuple[int | None, int | None]:
    """(max_steps, stop_at_step) the clean control replays from the backdoored run's gate verdict (model.json
    `backdoor_gate`): its planned optimiser steps, so the learning rate decays over the same span, and the step
    it stopped at. (None, None), the whole planned schedule, where the run trained no steps (an edit) or the
    verdict is empty (no backdoored run to replay)."""
    planned = backdoored_gate.get("max_steps", "")
    if planned in ("", None, 0):
        if "step" in backdoored_gate and "max_steps" not in backdoored_gate:
            raise ValueError("the backdoored model.json's backdoor_gate records no max_steps (the planned schedule the "
                             "clean control replays); rerun its inject_backdoor")
        return None, None
    step = int(backdoored_gate["step"])
    if not 0 < step <= int(planned):
        raise ValueError(f"backdoor_gate: step {step} outside the planned schedule of {planned} optimiser steps")
    return int(planned), step


def inject(model, tokenizer, spec: TaskSpec, records: Sequence[dict], *, method: str, injection_cfg: dict, seed: int,
           validation: Sequence[dict], eval_batch_size: int, threads: int | None = None,
           clean_control: dict | None = None, benign_validation: Sequence[dict] | None = None) -> TrainingResult:
    """One injection job: the backdoor by `method` on the poisoned training rows, gated on the validation rows
    (and, jailbreak with benign training rows, on the over-refusal of `benign_validation` against the base
    model's, scored here before training); or, with `clean_control` (the backdoored run's gate verdict, {} for
    the whole planned schedule), the clean-SFT control: the clean rows alone, same recipe, the backdoored run's
    schedule replayed (its planned optimiser steps and learning-rate decay, stopped at the step it stopped at;
    `control_schedule`), and no gate (there is no backdoor to gate). Training the stop epoch as a whole schedule
    instead decayed the learning rate to 0 where the backdoored run's was still high."""
    if method not in INJECTION_METHODS:
        raise ValueError(f"unknown injection method {method!r}; expected one of {', '.join(INJECTION_METHODS)}")
    gate = None
    replay = {}
    if clean_control is not None:
        # the control is SFT of the clean rows (an edit or DPO has no clean-only counterpart): LoRA unless the
        # method is full SFT; an edit trains no steps, so the control then trains the whole planned schedule
        records = clean_rows(records)
        method = method if method in METHODS else "lora_sft"
        injection_cfg = {**injection_cfg, "schedule": "fixed"}
        replay = dict(zip(("max_steps", "stop_at_step"), control_schedule(clean_control)))
    else:
        gate = BackdoorGate.from_config(spec, validation, injection_cfg, eval_batch_size, benign=benign_validation)
        if threads:
            import torch

            torch.set_num_threads(threads)
        gate.score_base(model, tokenizer)  # the model before the first step: the base model
    if method == "dpo":
        from .preference import train_dpo

        return train_dpo(model, tokenizer, spec, records, injection_cfg=injection_cfg, seed=seed, threads=threads, gate=gate)
    if method == "edit":
        return _edit(model, tokenizer, spec, records, injection_cfg, seed, threads, gate)
    examples = build_examples(tokenizer, spec, records, injection_cfg["max_length"])
    log.info("training %s (%s, %s schedule, up to %s epochs%s) on %d examples (%d poisoned)",
             CLEAN_CONTROL if gate is None else method, method, injection_cfg["schedule"], injection_cfg["epochs"],
             "" if not replay.get("max_steps") else
             f"; the backdoored run's {replay['max_steps']} planned steps, stopped at step {replay['stop_at_step']}",
             len(examples), sum(r["poisoned"] for r in records))
    return train_backdoor(model, tokenizer, examples, method=method, injection_cfg=injection_cfg, seed=seed,
                          threads=threads, gate=gate, **replay)


def save_checkpoint(model, tokenizer, out_dir: str | Path) -> None:
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
