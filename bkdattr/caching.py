"""Activation caches: probe representations and per-head outputs, one batched forward per batch.

Per prompt and layer l we read
  resid_probe[l]        -- residual after layer l's input norm at the probe position (config
                           probes.position; default the end of the rendered user turn, as the official code)
  heads_prompt_last[l]  -- every head's additive output (z_j @ W_O[j]) at the last prompt token
with dynamic left padding (each batch pads to its own longest prompt). `padding="fixed"` pads
every prompt to `fixed_length` tokens, the official scripts' way, kept only as a benchmark baseline.
The tokens every prompt shares before the first read position are run once (generation.SharedPrefix).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tqdm import tqdm

from .chat import encode_prompt, pad_batch, probe_position
from .generation import SharedPrefix, prefill
from .hooks import ModelSites, trace
from .provenance import ProvenanceError


def check_finite(tensor, name: str, source: str) -> None:
    """Fail on NaN/inf with the first bad row named (a NaN here would silently poison every mean)."""
    bad = ~torch.isfinite(tensor)
    if bad.any():
        row = int(bad.reshape(bad.shape[0], -1).any(1).nonzero()[0])
        raise ValueError(f"{source}: non-finite values (NaN/inf) in {name} at row {row}; "
                         "the model or its dtype is numerically broken (try dtype float32)")


def forward_last_only(model, input_ids, attention_mask, cache=None):
    """The forward pass of a cache batch: generation.prefill without a KV cache to keep. With `cache` (of the
    first columns of `attention_mask`), only the columns after it are run."""
    return prefill(model, input_ids, attention_mask, cache, use_cache=False)


def cache_activations(model, tokenizer, user_texts: Sequence[str], *, batch_size: int, read_heads: bool = True,
                      position: str = "template_end", padding: str = "dynamic", fixed_length: int = 256,
                      progress: str | None = None, share_prefix: bool = True) -> dict:
    """{"resid_probe": [N, L, d], "heads_prompt_last": [N, L, H, d]} in the order of `user_texts`."""
    sites = ModelSites.of(model)
    layers = list(range(sites.n_layers))
    encodings = [encode_prompt(tokenizer, t) for t in user_texts]
    if padding == "fixed" and max(len(e.input_ids) for e in encodings) > fixed_length:
        raise ValueError(f"a prompt is longer than fixed_length={fixed_length}")
    order = sorted(range(len(encodings)), key=lambda i: (-len(encodings[i].input_ids), i))
    device = next(model.parameters()).device
    resid = [None] * len(encodings)
    heads = [None] * len(encodings)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    shared = None
    if share_prefix and padding == "dynamic":  # the shared part ends at or before every read position
        shared = SharedPrefix.of(model, [e.input_ids for e in encodings],
                                 at_most=min(probe_position(e, position) for e in encodings))
    skip = len(shared) if shared is not None else 0  # columns not in the forward call (run once, cached)
    for batch in tqdm(batches, desc=progress or "cache", disable=progress is None, mininterval=5):
        cache = None
        if shared is not None:
            input_ids, attention_mask, cache = shared.batch([encodings[i].input_ids[skip:] for i in batch],
                                                            tokenizer.pad_token_id, "left", device)
        else:
            seqs = [encodings[i].input_ids for i in batch]
            if padding == "fixed":
                seqs = seqs + [[tokenizer.pad_token_id] * fixed_length]  # forces the batch width, dropped below
            ids, mask = pad_batch(seqs, tokenizer.pad_token_id, side="left")
            input_ids = torch.tensor(ids[: len(batch)], device=device)
            attention_mask = torch.tensor(mask[: len(batch)], device=device)
        width = input_ids.shape[1] - skip  # columns of the forward call; every prompt ends at its last one
        probe_pos = torch.tensor([width - len(encodings[i].input_ids) + probe_position(encodings[i], position)
                                  for i in batch], device=device)
        prompt_pos = torch.full((len(batch),), width - 1, device=device)  # left padding: the last column
        with torch.no_grad(), trace(model, read_heads=layers if read_heads else (), read_resid=layers,
                                    positions=prompt_pos, resid_positions=probe_pos) as t:
            forward_last_only(model, input_ids, attention_mask, cache)
        r = torch.stack([t.resid[l] for l in layers], dim=1).float().cpu()
        h = torch.stack([t.heads[l] for l in layers], dim=1).float().cpu() if read_heads else None
        for row, index in enumerate(batch):
            resid[index] = r[row]
            if read_heads:
                heads[index] = h[row]
    out = {"resid_probe": torch.stack(resid)}
    if read_heads:
        out["heads_prompt_last"] = torch.stack(heads)
    return out


def cache_pool(model, tokenizer, spec, records: Sequence[dict], *, batch_size: int, position: str, model_name: str,
               model_path: str, origin: str) -> tuple[dict, dict]:
    """(tensors, sidecar) of the attribution pool: row 2i is item i clean (label 0), row 2i+1 the same item
    triggered (label 1), with each item's group and eligibility; the sidecar says what was read and where, and
    `load_cache` checks it. Non-finite activations fail naming `origin` and the row."""
    texts = [spec.prompt(r["input"], triggered=t) for r in records for t in (False, True)]
    tensors = cache_activations(model, tokenizer, texts, batch_size=batch_size, position=position, progress="cache")
    for name, tensor in tensors.items():
        check_finite(tensor, name, origin)
    tensors["labels"] = torch.tensor([t for _ in records for t in (0, 1)], dtype=torch.int64)
    tensors["groups"] = torch.tensor([i for i in range(len(records)) for _ in (0, 1)], dtype=torch.int64)
    tensors["eligible"] = torch.tensor([spec.is_eligible(r) for r in records for _ in (0, 1)], dtype=torch.bool)
    sites = ModelSites.of(model)
    sidecar = {
        "model": model_name, "model_path": model_path, "task": spec.task_id,
        "positions": {"resid_probe": f"{position} (config probes.position), after the layer's input norm",
                      "heads_prompt_last": "last prompt token (generation prompt included), z_j @ W_O[j]"},
        "dtype": "float32", "n_rows": len(texts), "n_items": len(records), "n_layers": sites.n_layers,
        "n_heads": sites.n_heads, "head_dim": sites.head_dim, "d_model": sites.d_model,
        "row_layout": "row 2i = item i clean (label 0), row 2i+1 = item i triggered (label 1)",
        "tensors_sha256": tensors_sha256(tensors),  # load_cache refuses a tensors file that no longer matches
    }
    return tensors, sidecar


CACHE_FIX = "delete it (or run with --forcerun cache_activations) to rebuild it"


def tensors_sha256(tensors: dict) -> str:
    """sha256 of a cache's tensors (names, dtypes, shapes and every byte of their values): a byte changed on disk
    (with its mtime kept, so Snakemake sees nothing) changes it. Computed from the tensors, not the file, so it is
    the same whichever metadata the file carries."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode("utf-8"))
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def load_cache(tensors_path, sidecar_path, *, model_name: str, task: str) -> dict:
    """Load a cache and check its sidecar: a cache made by another model or task, an unreadable (truncated,
    corrupted) tensors file, or one whose tensors differ from those the sidecar recorded is refused, naming the
    file. A sidecar written before `tensors_sha256` was recorded is read with a warning (its contents unchecked)."""
    try:
        sidecar = json.loads(Path(sidecar_path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ProvenanceError(f"{sidecar_path}: not a readable cache sidecar ({err}); {CACHE_FIX}") from err
    for key, expected in (("model", model_name), ("task", task)):
        if sidecar.get(key) != expected:
            raise ValueError(f"{sidecar_path}: cache was made for {key} {sidecar.get(key)!r}, not {expected!r}; "
                             f"{CACHE_FIX}")
    try:
        tensors = load_file(str(tensors_path))
    except SafetensorError as err:
        raise ProvenanceError(f"{tensors_path}: not a readable safetensors file, truncated or corrupted ({err}); "
                              f"{CACHE_FIX}") from err
    recorded = sidecar.get("tensors_sha256")
    if recorded is None:
        logging.getLogger(__name__).warning("%s: its sidecar %s records no tensors_sha256 (written before caches were "
                                            "fingerprinted), so its contents are not checked; %s", tensors_path,
                                            sidecar_path, CACHE_FIX)
    elif tensors_sha256(tensors) != recorded:
        raise ProvenanceError(f"{tensors_path}: its tensors differ from those recorded in {sidecar_path} when the "
                              f"cache was written (corrupted or replaced on disk); {CACHE_FIX}")
    n = sidecar["n_rows"]
    for name, tensor in tensors.items():
        if tensor.shape[0] != n:
            raise ValueError(f"{tensors_path}: {name} has {tensor.shape[0]} rows, the sidecar says {n}")
        if tensor.is_floating_point():
            check_finite(tensor, name, str(tensors_path))
    return tensors
