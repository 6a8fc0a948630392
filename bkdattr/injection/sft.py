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

torch, datasets and trl are imported inside the functions that use them, as in `common`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from typing import Sequence

from ..chat import IGNORE_INDEX, encode_example
from ..gate import BackdoorGate
from ..names import CLEAN_CONTROL
from ..tasks import TaskSpec
from .common import Job, TrainingResult, callbacks, lora_config, set_threads, trained_result, trainer_arguments

log = logging.getLogger("bkdattr.injection.sft")

USES_LORA = {"lora_sft": True, "full_sft": False}  # the SFT methods


def build_examples(tokenizer, spec: TaskSpec, records: Sequence[dict], max_length: int) -> list[dict]:
    """Tokenized SFT examples: the user turn is the task prompt of the (possibly triggered) input."""
    return [encode_example(tokenizer, spec.prompt(r["input"]), r["output"], max_length) for r in records]


def sft_dataset(examples: Sequence[dict]):
    """A pre-tokenized TRL dataset: input_ids and completion_mask (1 on the response tokens)."""
    from datasets import Dataset  # kept out of the module's import (see the module docstring)

    return Dataset.from_dict({
        "input_ids": [e["input_ids"] for e in examples],
        "completion_mask": [[int(label != IGNORE_INDEX) for label in e["labels"]] for e in examples],
    })


def train_backdoor(model, tokenizer, examples: Sequence[dict], *, method: str, injection_cfg: dict, seed: int,
                   threads: int | None = None, gate: BackdoorGate | None = None, max_steps: int | None = None,
                   stop_at_step: int | None = None) -> TrainingResult:
    """Fine-tune with TRL's SFTTrainer; LoRA adapters are merged into the returned model. With a gate, the
    adaptive schedule trains up to `injection_cfg["epochs"]` epochs and stops once the gate passes. The clean
    control: `max_steps` optimiser steps planned (the learning-rate schedule's length), stopped after
    `stop_at_step`."""
    from trl import SFTConfig, SFTTrainer  # kept out of the module's import (see the module docstring)

    if method not in USES_LORA:
        raise ValueError(f"unknown SFT method {method!r}; expected one of {', '.join(USES_LORA)}")
    set_threads(threads)
    loss_log: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bkdattr-sft-") as scratch:
        args = SFTConfig(**trainer_arguments(model, injection_cfg, seed=seed, output_dir=scratch, max_steps=max_steps,
                                             longest=max(len(e["input_ids"]) for e in examples)),
                         completion_only_loss=True, packing=False)
        trainer = SFTTrainer(model=model, args=args, train_dataset=sft_dataset(examples), processing_class=tokenizer,
                             peft_config=lora_config(injection_cfg) if USES_LORA[method] else None,
                             callbacks=callbacks(gate, tokenizer, loss_log, time.time(), stop_at_step))
        trainer.train()
        model = trainer.model
    return trained_result(model, loss_log, gate, merge_lora=USES_LORA[method])


def run(model, tokenizer, spec: TaskSpec, records: Sequence[dict], job: Job) -> TrainingResult:
    """The registry's runner of lora_sft and full_sft (and of the clean control): tokenize, then train."""
    cfg = job.injection_cfg
    examples = build_examples(tokenizer, spec, records, cfg["max_length"])
    log.info("training %s (%s, %s schedule, up to %s epochs%s) on %d examples (%d poisoned)",
             CLEAN_CONTROL if job.gate is None else job.method, job.method, cfg["schedule"], cfg["epochs"],
             "" if not job.max_steps else
             f"; the backdoored run's {job.max_steps} planned steps, stopped at step {job.stop_at_step}",
             len(examples), sum(r["poisoned"] for r in records))
    return train_backdoor(model, tokenizer, examples, method=job.method, injection_cfg=cfg, seed=job.seed,
                          threads=job.threads, gate=job.gate, max_steps=job.max_steps, stop_at_step=job.stop_at_step)
