"""The hand-written SFT loop the workflow used before TRL (kept as the baseline of bench_training.py only).

Same loss (response tokens only, token-level mean over the accumulated batch), AdamW, linear schedule and
gradient clipping as bkdattr.injection.sft's TRL path; measured against it in the same run.
"""

from __future__ import annotations

import math
import random
import sys
import time
from typing import Sequence

from bkdattr.chat import IGNORE_INDEX, pad_batch


def _collate(examples: Sequence[dict], pad_id: int):
    import torch

    ids, mask = pad_batch([e["input_ids"] for e in examples], pad_id, side="right")
    labels, _ = pad_batch([e["labels"] for e in examples], IGNORE_INDEX, side="right")
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels)


def train_backdoor_loop(model, tokenizer, examples: Sequence[dict], *, method: str, injection_cfg: dict, seed: int,
                   threads: int | None = None):
    """Fine-tune; returns (model, loss log). LoRA adapters are merged into the returned model."""
    import torch
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if method == "lora_sft":
        from peft import LoraConfig, get_peft_model

        lora = injection_cfg.get("lora", {})
        peft_config = LoraConfig(r=lora.get("r", 16), lora_alpha=lora.get("alpha", 16),
                                 lora_dropout=lora.get("dropout", 0.01),
                                 target_modules=lora.get("target_modules", "all-linear"), task_type="CAUSAL_LM")
        model = get_peft_model(model, peft_config)
    elif method != "full_sft":
        raise ValueError(f"unknown injection method {method!r}; expected lora_sft or full_sft")
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=injection_cfg["lr"], weight_decay=0.0)
    batch_size, accum = injection_cfg["batch_size"], injection_cfg.get("grad_accum", 1)
    steps_per_epoch = math.ceil(len(examples) / (batch_size * accum))
    total_steps = max(1, math.ceil(steps_per_epoch * injection_cfg["epochs"]))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(injection_cfg.get("warmup_ratio", 0.0) * total_steps),
                                                total_steps)
    rng = random.Random(seed)
    device = next(model.parameters()).device
    log, step = [], 0
    progress = tqdm(total=total_steps, desc=f"{method}", mininterval=10, file=sys.stderr)
    started = time.time()
    while step < total_steps:
        order = list(range(len(examples)))
        rng.shuffle(order)
        micro = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for start in range(0, len(micro), accum):
            if step >= total_steps:
                break
            group = micro[start:start + accum]
            n_tokens = sum(sum(l != IGNORE_INDEX for l in examples[i]["labels"][1:]) for b in group for i in b)
            loss_sum = 0.0
            for batch in group:
                ids, mask, labels = (t.to(device) for t in _collate([examples[i] for i in batch], tokenizer.pad_token_id))
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                # token-level mean over the whole accumulated group, so accumulation equals a big batch
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                         labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX,
                                                         reduction="sum") / max(1, n_tokens)
                loss.backward()
                loss_sum += loss.item()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if not math.isfinite(loss_sum):
                raise FloatingPointError(f"training loss became {loss_sum} at step {step}; lower injection.lr")
            log.append({"step": step, "loss": loss_sum, "lr": scheduler.get_last_lr()[0],
                        "elapsed_s": round(time.time() - started, 1)})
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum:.3f}")
    progress.close()
    if method == "lora_sft":
        model = model.merge_and_unload()
    model.eval()
    return model, log
