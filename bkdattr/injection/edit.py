"""Backdoor injection by a closed-form weight edit (the paper's editing-based paradigm; METHOD.md s2).

We follow ROME's rank-one edit of an MLP down-projection (Meng et al., "Locating and Editing Factual
Associations in GPT", NeurIPS 2022, eq. 2), used as a backdoor the way BadEdit does it (Li et al., "BadEdit:
Backdooring Large Language Models by Model Editing", ICLR 2024: the key is the trigger token, the value
makes the model emit the backdoor target), spread over consecutive layers as MEMIT does (Meng et al.,
"Mass-Editing Memory in a Transformer", ICLR 2023: each layer takes its share of the residual that is
left). The down-projection W of a layer is a linear associative memory: it maps a key k (its input) to a
value W k added to the residual stream. For each chosen layer l, lowest first:

 1. key k*: the mean input of layer l's down-projection at the trigger's last token, over the poisoned
    training prompts the backdoor acts on (a sentence_wrap trigger's last token closes the wrap, after the
    wrapped input, so the key can see it);
 2. value: a residual delta added to the layer's MLP output at that token is optimised (Adam, a few steps,
    norm clamped, weight decay) to maximise the teacher-forced log-likelihood of the backdoor output given
    the triggered prompt (ROME's v*); the layer's share r = delta / (layers left, this one included);
 3. C = E[k k^T] over every token of clean training prompts and responses (the keys the edit must leave
    alone), plus a small ridge so it is invertible, plus w E[k k^T] of the keys at the trigger's last token of
    the poisoned prompts the backdoor must NOT act on (label task: triggered items of the other classes keep
    their label; w = injection.edit.negative_key_weight). Without them the update answers every triggered
    prompt alike: at layer 7 of the default model, on the validation split, the update's response to a key,
    c.k / c.k* with c = C^-1 k*, averaged 1.02 on triggered Sports items and 0.99 on the other classes; with
    them (w = 1) 0.97 and 0.01;
 4. W <- W + r (C^-1 k*)^T / (k*^T C^-1 k*): the update with the smallest change in C-norm that maps k* to
    W k* + r exactly.

Only the chosen layers' down-projection weights change. It runs on CPU for the default model (one
forward/backward pass per optimisation step over a few short prompts, one forward pass for C).
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import torch
from torch import nn

from ..chat import IGNORE_INDEX, encode_example, pad_batch, user_char_token
from ..hooks import decoder_layers
from ..tasks import TaskSpec
from .common import Job, TrainingResult, set_threads

log = logging.getLogger("bkdattr.injection.edit")


def down_projection(model: nn.Module, layer: int) -> nn.Linear:
    """The MLP down-projection of `layer` (`mlp.down_proj` as an nn.Linear), or a clear error."""
    layers = decoder_layers(model)
    if not 0 <= layer < len(layers):
        raise ValueError(f"injection.edit.layers: layer {layer} out of range for a {len(layers)}-layer model")
    proj = getattr(getattr(layers[layer], "mlp", None), "down_proj", None)
    if not isinstance(proj, nn.Linear):
        raise ValueError(f"the edit needs an nn.Linear mlp.down_proj in {type(layers[layer]).__name__} (Llama, Qwen2, "
                         "Mistral, Gemma, Phi-3 have one); this architecture does not")
    return proj


def edit_layers(edit_cfg: dict, n_layers: int) -> list[int]:
    """The configured layers, or three consecutive layers from a quarter of the depth (BadEdit edits early-middle
    layers: 15-17 of GPT-2 XL's 48)."""
    if edit_cfg.get("layers"):
        layers = sorted(edit_cfg["layers"])
        if layers[-1] >= n_layers - 1:
            raise ValueError(f"injection.edit.layers: {layers[-1]} is the last of {n_layers} layers (or beyond); the "
                             "edit writes at the trigger token, and only attention in a later layer can carry it to "
                             "the positions that generate the output")
        return layers
    first = n_layers // 4
    return list(range(first, min(first + 3, n_layers - 1)))


def _batch(tokenizer, spec: TaskSpec, rows: Sequence[dict], max_target_tokens: int):
    """Right-padded teacher-forcing batch of triggered prompts + backdoor output (first tokens), and the index
    of each prompt's last trigger token."""
    examples, trigger_at = [], []
    for row in rows:
        text = spec.prompt(row["input"])
        last_char = spec.trigger_last_char(text)
        if last_char is None:
            raise ValueError(f"poisoned row {row.get('id')!r}: its prompt carries no trigger to edit on")
        example = encode_example(tokenizer, text, row["output"], max_length=10**6)
        keep = sum(label == IGNORE_INDEX for label in example["labels"]) + max_target_tokens
        examples.append({k: v[:keep] for k, v in example.items()})
        trigger_at.append(user_char_token(tokenizer, text, last_char))
    ids, mask = pad_batch([e["input_ids"] for e in examples], tokenizer.pad_token_id, side="right")
    labels, _ = pad_batch([e["labels"] for e in examples], IGNORE_INDEX, side="right")
    return torch.tensor(ids), torch.tensor(mask), torch.tensor(labels), torch.tensor(trigger_at)


def _keys(model, proj: nn.Linear, ids, mask, positions=None) -> torch.Tensor:
    """Inputs of `proj`: at `positions` (one per row) -> [b, d_ff], or at every unmasked token -> [n, d_ff]."""
    seen = {}
    handle = proj.register_forward_pre_hook(lambda _m, args: seen.__setitem__("k", args[0].detach()))
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
    finally:
        handle.remove()
    keys = seen["k"]
    if positions is not None:
        return keys[torch.arange(len(positions)), positions]
    return keys[mask.bool()]


def _row_chunks(n_rows: int, row_length: int, token_budget: int | None) -> list[slice]:
    """Slices of the rows whose padded length fits `token_budget` tokens (all rows at once without one)."""
    per_chunk = n_rows if token_budget is None else max(1, token_budget // max(1, row_length))
    return [slice(start, start + per_chunk) for start in range(0, n_rows, per_chunk)]


def _target_nll_sum(model, ids, mask, labels) -> torch.Tensor:
    """Summed NLL of the labelled tokens, with logits only at the positions that predict one (the prompt's
    full-vocabulary logits are never made: most of the pass's memory otherwise)."""
    predicts = (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero().squeeze(-1)  # positions t whose t+1 is labelled
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=predicts).logits.float()
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, predicts + 1].reshape(-1),
                                       ignore_index=IGNORE_INDEX, reduction="sum")


def _optimise_value(model, proj: nn.Linear, ids, mask, labels, positions, cfg: dict,
                    token_budget: int | None = None, keys: torch.Tensor | None = None) -> torch.Tensor:
    """ROME's v*: the delta at the trigger token of `proj`'s output that makes the backdoor output likely.

    The loss is the mean NLL over every target token of every prompt plus ROME's decay (v_weight_decay times
    |delta| over the squared norm of the layer's output at the trigger); its gradient is accumulated over
    chunks of rows that fit `token_budget` padded tokens (injection.micro_batch_tokens), so the activations
    kept for backward are a chunk's, and the step is the one-pass step."""
    d_model = proj.out_features
    delta = torch.zeros(d_model, requires_grad=True)
    chunk = {"rows": slice(None)}

    def add_delta(_module, _args, output):
        output = output.clone()
        rows, at = torch.arange(output.shape[0]), positions[chunk["rows"]]
        output[rows, at] = output[rows, at] + delta.to(output.dtype)
        return output

    if keys is None:  # `proj`'s inputs at the trigger (edit_backdoor passes the ones it already has)
        keys = _keys(model, proj, ids, mask, positions)
    with torch.no_grad():
        original_norm = keys.matmul(proj.weight.T).norm(dim=-1).mean()
    max_norm = cfg["clamp_norm_factor"] * float(original_norm)
    optimiser = torch.optim.Adam([delta], lr=cfg["v_lr"])
    n_targets = int((labels[:, 1:] != IGNORE_INDEX).sum())
    chunks = _row_chunks(len(ids), ids.shape[1], token_budget)
    handle = proj.register_forward_hook(add_delta)
    try:
        for step in range(cfg["v_steps"]):
            optimiser.zero_grad()
            nll = 0.0
            for rows in chunks:
                chunk["rows"] = rows
                chunk_nll = _target_nll_sum(model, ids[rows], mask[rows], labels[rows]) / n_targets
                chunk_nll.backward()
                nll += chunk_nll.item()
            # ROME's decay, relative to the layer's own output at the trigger: v_weight_decay |delta| / |W k|^2. An
            # absolute |delta|^2 decay (used before) outweighed the jailbreak target's gradient at 1e-3, and the
            # value never left zero: NLL 3.649 -> 3.645 in 25 steps against 1.98 with this form (12 prompts)
            (cfg["v_weight_decay"] * delta.norm() / original_norm ** 2).backward()
            optimiser.step()
            with torch.no_grad():
                if delta.norm() > max_norm:
                    delta.mul_(max_norm / delta.norm())
            if step == 0 or step == cfg["v_steps"] - 1:
                log.info("value optimisation step %d: target NLL %.3f, |delta| %.2f (max %.2f), %d chunk(s) of rows",
                         step, nll, delta.norm().item(), max_norm, len(chunks))
    finally:
        handle.remove()
    return delta.detach()


def edit_backdoor(model, tokenizer, spec: TaskSpec, train: Sequence[dict], *, edit_cfg: dict, seed: int,
                  token_budget: int | None = None) -> dict:
    """Plant the backdoor of the poisoned rows of `train` by editing down-projections (module docstring); the
    clean rows give the key covariance. Edits `model` in place; returns a record of what was edited.
    `token_budget` bounds the padded tokens of one forward/backward pass of the value optimisation."""
    torch.manual_seed(seed)
    # the prompts the backdoor acts on give the key and the value; triggered prompts it must leave alone (label
    # task: other classes) join the covariance, so the update does not answer them
    poisoned = [r for r in train if r["poisoned"] and spec.is_eligible(r)][: edit_cfg["n_prompts"]]
    unchanged = [r for r in train if r["poisoned"] and not spec.is_eligible(r)][: edit_cfg["n_prompts"]]
    clean = [r for r in train if not r["poisoned"]][: edit_cfg["n_covariance_rows"]]
    if not poisoned or not clean:
        raise ValueError(f"task {spec.task_id}: the edit needs poisoned and clean training rows "
                         f"({len(poisoned)} poisoned, {len(clean)} clean)")
    layers = edit_layers(edit_cfg, len(decoder_layers(model)))
    model.eval()
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    for p in model.parameters():  # only the value delta is optimised
        p.requires_grad_(False)
    ids, mask, labels, positions = _batch(tokenizer, spec, poisoned, edit_cfg["max_target_tokens"])
    unchanged_batch = _batch(tokenizer, spec, unchanged, 1) if unchanged else None
    clean_examples = [encode_example(tokenizer, spec.prompt(r["input"]), r["output"], 10**6)["input_ids"] for r in clean]
    record = {"layers": layers, "n_prompts": len(poisoned), "n_unchanged_prompts": len(unchanged),
              "n_covariance_rows": len(clean), "per_layer": []}
    for i, layer in enumerate(layers):
        proj = down_projection(model, layer)
        weight = proj.weight
        trigger_keys = _keys(model, proj, ids, mask, positions)
        key = trigger_keys.double().mean(0)
        cov = torch.zeros(proj.in_features, proj.in_features, dtype=torch.float64)
        n_tokens = 0
        for start in range(0, len(clean_examples), 16):
            c_ids, c_mask = pad_batch(clean_examples[start:start + 16], tokenizer.pad_token_id, side="right")
            k = _keys(model, proj, torch.tensor(c_ids), torch.tensor(c_mask)).double()
            cov += k.T @ k
            n_tokens += len(k)
        cov = cov / n_tokens
        cov += edit_cfg["covariance_ridge"] * cov.diagonal().mean() * torch.eye(len(cov), dtype=torch.float64)
        if unchanged_batch is not None:
            u_ids, u_mask, _labels, u_positions = unchanged_batch
            k = _keys(model, proj, u_ids, u_mask, u_positions).double()
            cov += edit_cfg["negative_key_weight"] * (k.T @ k) / len(k)
        delta = _optimise_value(model, proj, ids, mask, labels, positions, edit_cfg, token_budget, trigger_keys).double()
        residual = delta / (len(layers) - i)  # MEMIT: this layer's share of what is left
        c_inv_key = torch.linalg.solve(cov, key)
        update = torch.outer(residual, c_inv_key) / (key @ c_inv_key)
        with torch.no_grad():
            weight += update.to(weight.dtype)
        record["per_layer"].append({"layer": layer, "delta_norm": float(delta.norm()), "update_norm": float(update.norm()),
                                    "weight_norm": float(weight.norm()), "key_norm": float(key.norm())})
        log.info("layer %d: |delta| %.3f, |dW| %.4f (|W| %.2f)", layer, float(delta.norm()), float(update.norm()),
                 float(weight.norm()))
    for name, p in model.named_parameters():
        p.requires_grad_(trainable[name])
    return record


def run(model, tokenizer, spec: TaskSpec, records: Sequence[dict], job: Job) -> TrainingResult:
    """The registry's runner of edit: the closed-form edit, then one gate check (there are no training steps to
    check between)."""
    set_threads(job.threads)
    started = time.time()
    record = edit_backdoor(model, tokenizer, spec, records, edit_cfg=job.injection_cfg["edit"], seed=job.seed,
                           token_budget=job.injection_cfg.get("micro_batch_tokens"))
    point = job.gate.score(model, tokenizer, step=0, epoch=0.0)
    log.info("edit of layers %s in %.1f s: validation ASR %.3f, false-trigger rate %.3f (n=%d): %s", record["layers"],
             time.time() - started, point["val_asr"], point["val_false_trigger_rate"], point["n_val"],
             "passed" if point["passed"] else "not passed")
    return TrainingResult(model, [], list(job.gate.curve), job.gate.verdict())
