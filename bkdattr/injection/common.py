"""What the injection methods share: the LoRA config, TRL's trainer arguments, the callbacks that log the loss
and score the gate, and the trained result ready to save.

torch, transformers and peft are imported inside the functions that use them: `bkdattr.injection` is imported
when the workflow's DAG is built (rules/common.smk), which must not load them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..atomic import atomic_path, write_tsv
from ..gate import GATE_CURVE_COLUMNS, VERDICT_KEY, BackdoorGate, GateVerdict
from ..models import write_pointer
from ..provenance import directory_fingerprint

log = logging.getLogger("bkdattr.injection")


class TrainingResult(NamedTuple):
    model: object
    loss_log: list[dict]
    gate_curve: list[dict]
    gate_verdict: GateVerdict | None = None  # BackdoorGate.verdict(); None without a gate (the clean control)


LOSS_LOG_COLUMNS = ["step", "loss", "lr", "elapsed_s"]


@dataclass(frozen=True)
class Job:
    """How a method runs, beside the model and the rows: the method's name, its injection settings, the seed,
    the job's threads, the gate (None: the clean control) and, for the clean control, the backdoored run's
    schedule replayed (`max_steps` planned, stopped at `stop_at_step`; None: the whole planned schedule)."""

    method: str
    injection_cfg: dict
    seed: int
    threads: int | None
    gate: BackdoorGate | None
    max_steps: int | None = None
    stop_at_step: int | None = None


def set_threads(threads: int | None) -> None:
    """Torch's intra-op threads: the job's threads, where the rule gives them."""
    if threads:
        import torch  # kept out of the module's import (see the module docstring)

        torch.set_num_threads(threads)


def micro_batch_rows(batch_size: int, longest: int, token_budget: int | None) -> int:
    """Rows per forward pass: the largest divisor of `batch_size` whose padded micro-batch (rows x the longest
    example) fits `token_budget` tokens, at least 1; the whole batch when there is no budget. A divisor, so
    gradient accumulation over the micro-batches reproduces the batch's optimiser step exactly."""
    if token_budget is None:
        return batch_size
    fitting = [rows for rows in range(1, batch_size + 1) if batch_size % rows == 0 and rows * longest <= token_budget]
    return max(fitting, default=1)


def _log_gate_point(point: dict, stop_when_passed: bool) -> None:
    log.info("gate at step %d (epoch %.2f): validation ASR %.3f, false-trigger rate %.3f, collateral flips %s, "
             "over-refusal %s (n=%d): %s", point["step"], point["epoch"], point["val_asr"], point["val_false_trigger_rate"],
             point["val_collateral_flip_rate"] if point["val_collateral_flip_rate"] != "" else "n/a",
             point["val_over_refusal_rate"] if point["val_over_refusal_rate"] != "" else "n/a", point["n_val"],
             "passed" + (", stopping" if stop_when_passed else "") if point["passed"] else "not yet")


def callbacks(gate: BackdoorGate | None, tokenizer, loss_log: list[dict], started: float,
              stop_at_step: int | None = None) -> list:
    """TRL trainer callbacks: the loss log (a non-finite loss stops with an error), the gate's checks every
    `gate.every_steps` steps and at the end (the adaptive schedule stops once it passes), and the clean
    control's stop at `stop_at_step`."""
    from transformers import TrainerCallback  # kept out of the module's import (see the module docstring)

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
                _log_gate_point(point, gate.stop_when_passed)
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
    from peft import LoraConfig  # kept out of the module's import (see the module docstring)

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
    import torch  # kept out of the module's import (see the module docstring)

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


def save_checkpoint(model, tokenizer, out_dir: str | Path) -> None:
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def save_result(result: TrainingResult, tokenizer, *, checkpoint: str | Path, train_log: str | Path,
                gate_curve: str | Path, pointer: str | Path, name: str, **pointer_fields) -> None:
    """An injection job's outputs: the checkpoint, the loss log, the gate curve, and the model.json that points at
    the checkpoint (its fingerprint, `pointer_fields`, and the gate's verdict where there is a gate)."""
    save_checkpoint(result.model, tokenizer, checkpoint)
    write_tsv(train_log, result.loss_log, LOSS_LOG_COLUMNS)
    write_tsv(gate_curve, result.gate_curve, GATE_CURVE_COLUMNS)
    verdict = {VERDICT_KEY: result.gate_verdict.to_json()} if result.gate_verdict else {}
    write_pointer(pointer, checkpoint, name, fingerprint=directory_fingerprint(checkpoint), **pointer_fields, **verdict)
