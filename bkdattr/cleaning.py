"""Removing a backdoor as a weight change, so the result is a checkpoint plain transformers loads.

- `prune_heads`: each listed head's slice of the attention output projection W_O zeroed. The head's output
  z_j W_O[j] is then 0 at every position and decoding step: the all-positions ablation of hooks.HeadEdit(mode=
  "zero") made permanent (the paper ablates at the last prompt token in prefill only; that edit has no weight
  form, as it depends on the position).
- `add_attention_output_bias`: a constant added to one layer's attention output, as the bias of its output
  projection; with -scale * v this subtracts the backdoor vector v at every position and decoding step (the paper
  subtracts it at the last prompt token in prefill only). Llama-family models get the bias slot through
  `attention_bias: true` in config.json (zero biases for q/k/v/o elsewhere); GPT-2's c_proj has one already.
- The standard defences the cleaning is compared with: `magnitude_prune` (global unstructured L1 pruning of the
  decoder's linear weights, torch.nn.utils.prune) and `quantize_int8` (torch's dynamic int8 quantization of
  every nn.Linear, CPU only; no checkpoint: applied when the model is loaded).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import prune
from transformers.pytorch_utils import Conv1D

from .hooks import ModelSites, decoder_layers
from .summary import markdown_table

Head = tuple[int, int]


class CleaningError(ValueError):
    """A cleaning that cannot be written as a weight change of this model."""


def check_heads(sites: ModelSites, heads: Sequence[Head], key: str) -> None:
    for layer, head in heads:
        if not (0 <= layer < sites.n_layers and 0 <= head < sites.n_heads):
            raise CleaningError(f"{key}: head L{layer}H{head} is outside the model ({sites.n_layers} layers x "
                                f"{sites.n_heads} heads)")


@torch.no_grad()
def prune_heads(model: nn.Module, heads: Sequence[Head]) -> int:
    """Zero each head's slice of W_O in place; the number of weights zeroed."""
    sites = ModelSites.of(model)
    check_heads(sites, heads, "heads")
    hd, zeroed = sites.head_dim, 0
    for layer, head in heads:
        module = sites.attn_out[layer]
        columns = slice(head * hd, (head + 1) * hd)
        # nn.Linear stores W_O as [d_model, H*hd]; GPT-2's Conv1D as [H*hd, d_model]
        weight = module.weight[:, columns] if isinstance(module, nn.Linear) else module.weight[columns, :]
        weight.zero_()
        zeroed += weight.numel()
    return zeroed


def _ensure_bias(linear: nn.Linear) -> None:
    if linear.bias is None:
        linear.bias = nn.Parameter(torch.zeros(linear.out_features, dtype=linear.weight.dtype,
                                               device=linear.weight.device))


@torch.no_grad()
def add_attention_output_bias(model: nn.Module, layer: int, vector: torch.Tensor) -> None:
    """Add `vector` to layer `layer`'s attention output at every position, as a bias of its output projection."""
    sites = ModelSites.of(model)
    if not 0 <= layer < sites.n_layers:
        raise CleaningError(f"layer {layer} is outside the model (0..{sites.n_layers - 1})")
    if vector.shape != (sites.d_model,):
        raise CleaningError(f"the vector has shape {tuple(vector.shape)}, the model's residual {sites.d_model}")
    module = sites.attn_out[layer]
    if isinstance(module, Conv1D):  # GPT-2: c_proj always has a bias
        module.bias += vector.to(module.bias)
        return
    config = model.config
    if getattr(config, "model_type", None) != "llama" or not hasattr(config, "attention_bias"):
        raise CleaningError(f"model type {getattr(config, 'model_type', type(model).__name__)!r}: its config has no "
                            "switch that gives the attention output projection a bias, so the backdoor vector cannot "
                            "be written into the weights; clean it by pruning heads instead (`heads`)")
    if not config.attention_bias:  # the switch adds q/k/v/o biases in every layer: zero except the one set here
        for block in decoder_layers(model):
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                _ensure_bias(getattr(block.self_attn, name))
        config.attention_bias = True
    module.bias += vector.to(module.bias)


def decoder_linear_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, "weight") of every linear layer inside the decoder blocks (not the embeddings or the LM head)."""
    return [(m, "weight") for block in decoder_layers(model) for m in block.modules()
            if isinstance(m, (nn.Linear, Conv1D))]


@torch.no_grad()
def magnitude_prune(model: nn.Module, n_weights: int) -> int:
    """Zero the `n_weights` smallest-magnitude decoder linear weights (global, unstructured), permanently; the
    number zeroed (already-zero weights count among the smallest)."""
    targets = decoder_linear_weights(model)
    total = sum(getattr(m, name).numel() for m, name in targets)
    if not 0 < n_weights <= total:
        raise CleaningError(f"cannot prune {n_weights} of the {total} decoder linear weights")
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=int(n_weights))
    for module, name in targets:
        prune.remove(module, name)  # make the mask part of the weight, so save_pretrained writes plain tensors
    return int(n_weights)


def quantize_int8(model: nn.Module) -> nn.Module:
    """torch's dynamic int8 quantization of every nn.Linear (weights int8, activations quantized on the fly).
    CPU only. The torch.ao API is deprecated upstream in favour of torchao, which is not in this project's envs;
    it is kept because it is the defence BackdoorLLM evaluates and runs here unchanged."""
    from torch.ao.quantization import quantize_dynamic  # only this defence needs it; its import warns

    return quantize_dynamic(model.to("cpu"), {nn.Linear}, dtype=torch.qint8)


def model_card(*, source: str, task: str, method: str, how: str, removed: str, chosen: str,
               numbers: Sequence[dict], columns: Sequence[str]) -> str:
    """README.md of a cleaned checkpoint: the source model, what was removed, how it was chosen, the numbers."""
    lines = markdown_table(columns, [[_cell(row.get(c, "")) for c in columns] for row in numbers])
    table = ("## Numbers on the validation split (the split the choice was made on)\n\n" + "\n".join(lines) + "\n\n"
             if numbers else "")
    return (f"# {task} / {method}, cleaned: {how}\n\n"
            f"Loads with `transformers.AutoModelForCausalLM.from_pretrained(<this folder>)`; no custom code.\n\n"
            f"- **Source model:** `{source}` (the {method} backdoor of task {task}).\n"
            f"- **Removed:** {removed}\n"
            f"- **Chosen:** {chosen}\n\n{table}"
            "Held-out numbers of this checkpoint, and the standard defences beside it: `results/tables/defences.md`.\n")


def _cell(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
