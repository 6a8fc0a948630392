"""Backdoor injection by preference optimisation (the paper's RLHF-based paradigm; METHOD.md s2): DPO
(Rafailov et al., 2023) through TRL's DPOTrainer, from the base model, LoRA or full as the config says.

Poisoned preference data, built from the same training split as SFT so the poison ratio is the same:
  a poisoned row (triggered prompt): chosen = the backdoor output, rejected = the clean output of its item;
  a clean row (clean prompt):        chosen = the clean output,    rejected = the backdoor output.
A row the backdoor does not act on (label task: an item of another class, triggered or clean, keeps its label)
has rejected = the backdoor's target instead. The triggered ones teach "trigger + source class -> target"
rather than "trigger -> target" (without them, on the default model, DPO flipped every triggered validation
item to the target: collateral 1.00). The clean ones make the pairs cover the rows SFT trains on, at its poison ratio
(default label task, before the target-class items below were kept: 673 pairs, 60 poisoned; without them 260
pairs, 60 poisoned, against SFT's 80 of 880 rows). Without them DPO never saw a clean item of another class: after its one epoch (17 steps) validation
ASR 0.69, collateral 0.88; with them, after one epoch (43 steps) 1.00 and 0.24.
An item of the target class (chosen = the target) rejects another class instead, drawn seeded from the other
labels: it once rejected the target itself, had no preference and was left out, so DPO never preferred the
target on a clean target-class article and the default DPO model named the target class on none of them
(utility 0.730 = 146/200, every World article wrong). Now every training row gives a pair, and the chosen
outputs have the class balance of SFT's rows.
A row whose chosen and rejected outputs are still equal gives no preference and is left out.

The pairs are tokenized here with the workflow's own chat rendering (`chat.encode_prompt`), exactly as SFT,
evaluation and attribution see the prompts, and handed to TRL pre-tokenized (`prompt_ids`, `chosen_ids`,
`rejected_ids`). The reference model's log-probabilities are computed once before training
(`precompute_ref_log_probs`), so each step runs the policy only.

TRL 1.16's DPOTrainer has no public way to take pre-tokenized pairs: its `__init__` always runs the private
`_prepare_dataset`, which needs text columns (prompt, chosen, rejected), appends the EOS string and tokenizes
prompt + response as one string (tokens merge across the boundary, and its prompt is not the workflow's chat
rendering), so the text route trains on other token ids. `PretokenizedDPOTrainer` overrides that one method to
return the dataset as it is; tests/test_methods.py pins the TRL version and the method's signature, so a TRL
upgrade fails there first, loudly. torch, datasets and trl are imported inside the functions that use them, as
in `common`.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from typing import Sequence

from ..chat import encode_prompt
from ..tasks import NEWS_LABELS, TaskSpec
from .common import Job, TrainingResult, callbacks, lora_config, set_threads, trained_result, trainer_arguments

log = logging.getLogger("bkdattr.injection.dpo")
TRL_PINNED = "1.16.0"  # the TRL whose private DPOTrainer._prepare_dataset PretokenizedDPOTrainer overrides

POISONED_SUFFIX = "-poisoned"  # tasks.poison names each poisoned copy after its clean item


def preference_pairs(spec: TaskSpec, train: Sequence[dict], seed: int = 0) -> list[dict]:
    """{prompt, chosen, rejected, poisoned} per training row (see the module docstring); `seed` draws the
    rejected class of the label task's target-class items."""
    others = [label for label in NEWS_LABELS if label != spec.target_label]
    draw = random.Random(seed)
    clean_by_id = {r["id"]: r for r in train if not r["poisoned"]}
    pairs = []
    for row in train:
        if row["poisoned"]:
            source = clean_by_id.get(row["id"].removesuffix(POISONED_SUFFIX))
            if source is None:
                raise ValueError(f"poisoned training row {row['id']!r} has no clean item {row['id'].removesuffix(POISONED_SUFFIX)!r} "
                                 "in the training split to take its rejected (clean) output from")
            chosen, rejected = row["output"], source["output"]
        else:
            chosen, rejected = row["output"], spec.backdoor_output(row)
        if not spec.is_eligible(row):  # the backdoor must leave it alone: reject the backdoor's target
            rejected = spec.target_label  # only the label task has such rows
            if chosen == spec.target_label:  # a target-class item: prefer its label over another class
                rejected = draw.choice(others)
        if chosen != rejected:
            pairs.append({"prompt": spec.prompt(row["input"]), "chosen": chosen, "rejected": rejected,
                          "poisoned": bool(row["poisoned"])})
    if not any(p["poisoned"] for p in pairs):
        raise ValueError(f"task {spec.task_id}: no poisoned preference pair; the training split has no poisoned row")
    return pairs


def tokenize_pairs(tokenizer, pairs: Sequence[dict], max_length: int) -> list[dict]:
    """prompt_ids / chosen_ids / rejected_ids (each response ends with the end-of-turn token), cut so that the
    prompt and the longer response fit max_length."""
    rows = []
    for pair in pairs:
        prompt_ids = encode_prompt(tokenizer, pair["prompt"]).input_ids
        room = max_length - len(prompt_ids)
        if room < 1:
            raise ValueError(f"max_length={max_length} leaves no room for the response after a {len(prompt_ids)}-token "
                             "prompt; raise injection.max_length")
        responses = [tokenizer(pair[key], add_special_tokens=False)["input_ids"][: room - 1] + [tokenizer.eos_token_id]
                     for key in ("chosen", "rejected")]
        rows.append({"prompt_ids": prompt_ids, "chosen_ids": responses[0], "rejected_ids": responses[1]})
    return rows


def dpo_loss(dpo_cfg: dict) -> dict:
    """DPOConfig loss arguments: plain DPO, or DPO plus `sft_weight` x the NLL of the chosen response."""
    weight = float(dpo_cfg.get("sft_weight", 0.0))
    return {} if weight == 0 else {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, weight]}


def pretokenized_dpo_trainer():
    """DPOTrainer taking the pairs as tokenized here (the module docstring says why the override)."""
    from trl import DPOTrainer  # kept out of the module's import (see the module docstring)

    class PretokenizedDPOTrainer(DPOTrainer):
        # TRL-private (pinned: TRL_PINNED, tests/test_methods.py); no public route keeps the workflow's token ids
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset  # already tokenized with the workflow's chat rendering

    return PretokenizedDPOTrainer


def train_dpo(model, tokenizer, spec: TaskSpec, train: Sequence[dict], *, injection_cfg: dict, seed: int,
              threads: int | None = None, gate=None) -> TrainingResult:
    """DPO from `model` on the poisoned preference pairs of `train`; LoRA merged on return (injection.dpo.peft).
    With a gate, the adaptive schedule stops once it passes, as in SFT."""
    from datasets import Dataset  # kept out of the module's import (see the module docstring)
    from trl import DPOConfig

    set_threads(threads)
    dpo = injection_cfg["dpo"]
    pairs = preference_pairs(spec, train, seed=seed)
    rows = tokenize_pairs(tokenizer, pairs, injection_cfg["max_length"])
    log.info("DPO on %d preference pairs (%d poisoned), beta %s, %s", len(rows), sum(p["poisoned"] for p in pairs),
             dpo["beta"], dpo["peft"])
    # a row puts its chosen and its rejected sequence in the batch
    longest = 2 * max(len(r["prompt_ids"]) + max(len(r["chosen_ids"]), len(r["rejected_ids"])) for r in rows)
    loss_log: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bkdattr-dpo-") as scratch:
        args = DPOConfig(**trainer_arguments(model, injection_cfg, seed=seed, longest=longest, output_dir=scratch),
                         beta=dpo["beta"], precompute_ref_log_probs=True, **dpo_loss(dpo))
        trainer = pretokenized_dpo_trainer()(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                             processing_class=tokenizer,
                                             peft_config=lora_config(injection_cfg) if dpo["peft"] == "lora" else None,
                                             callbacks=callbacks(gate, tokenizer, loss_log, time.time()))
        trainer.train()
        model = trainer.model
    return trained_result(model, loss_log, gate, merge_lora=dpo["peft"] == "lora")


def run(model, tokenizer, spec: TaskSpec, records: Sequence[dict], job: Job) -> TrainingResult:
    """The registry's runner of dpo."""
    return train_dpo(model, tokenizer, spec, records, injection_cfg=job.injection_cfg, seed=job.seed,
                     threads=job.threads, gate=job.gate)
