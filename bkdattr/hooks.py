"""Forward hooks on Hugging Face causal LMs: read and edit attention-head outputs.

Definitions
    head output a_{l,j}(pos) = z_j(pos) @ W_O[j], where z is the input of layer l's
    attention output projection (o_proj / GPT-2 c_proj) split into heads, and W_O[j]
    is head j's slice of that projection. sum_j a_j + bias == projection output.
    resid_pre_attn of layer l = output of the layer's input norm (= input of q_proj).

API
    ModelSites.of(model)                      -> per-layer modules, n_layers, n_heads, head_dim, d_model
    HeadEdit(layer, heads, mode, value=None, positions="all", prefill_only=False)
        mode "zero": a_j := 0; "replace": a_j := value_j; "add": a_j += value_j.
        value: [n_heads_listed, d_model], or anything broadcastable to
        [batch, n_listed, d_model] (tensor positions) / [batch, seq, n_listed, d_model] ("all").
    ResidualEdit(layer, vector, scale=1.0, positions="all", prefill_only=False)
        adds scale * vector to the attention output (projection output) of `layer`.
    with trace(model, read_heads=[..], read_resid=[..], positions=.., resid_positions=..,
               head_edits=[..], residual_edits=[..]) as t:
        model(...)
    t.heads[l]: [batch, n_heads, d_model] ([batch, seq, n_heads, d_model] for "all")
    t.resid[l]: [batch, d_model]          ([batch, seq, d_model] for "all")
    t.applied:  (layer, call_index, kind) for every application of an edit.
    t.hooks:    site name -> its hook object (AttnOutHook / ResidReadHook), one per hooked site.
    last_token_index(mask), position_ids_from_mask(mask), head_outputs(model, ids, mask, positions)

Sites (named as TransformerLens names its hook points)
    blocks.{l}.hook_attn_out        the attention output projection: reads its input z per head, edits
                                    its output (head and residual edits), keeps it (read_attn_out)
    blocks.{l}.ln1.hook_normalized  the input norm's output, resid_pre_attn (read_resid)

Rules
    * positions: LongTensor [batch] (one index per row) or "all".
    * Edits are computed in closed form on the projection OUTPUT (out += sum_j (new_j - a_j)),
      so no W_O inversion is needed; exact up to fp rounding.
    * Reads are taken AFTER the edits of the same layer (a zeroed head reads as 0).
      Reads are detached and recorded on the first forward call of the module only.
    * Prefill: call counters are reset when the context is entered; the first forward call
      of a hooked module inside the context is the prefill pass. `prefill_only` edits apply
      on that call only. Under `generate` this is the prompt pass (later calls are KV-cached
      decoding steps). Use one `trace` context per forward / per generate call.
    * Tensor positions index the current call's sequence; out-of-range raises ValueError
      (so under generate use prefill_only=True or positions="all").
    * All hooks are removed when the context exits, also on exception.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Literal, Sequence, Union

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

Positions = Union[Tensor, Literal["all"]]


@dataclass(frozen=True, eq=False)  # eq=False: tensor fields make == ambiguous
class HeadEdit:
    layer: int
    heads: Sequence[int]
    mode: Literal["zero", "replace", "add"]
    value: Tensor | None = None
    positions: Positions = "all"
    prefill_only: bool = False


@dataclass(frozen=True, eq=False)
class ResidualEdit:
    layer: int
    vector: Tensor
    scale: float = 1.0
    positions: Positions = "all"
    prefill_only: bool = False


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's decoder layers (Llama/Qwen2/Mistral/Gemma/Phi-3 `model.layers`, GPT-2 `transformer.h`, ...)."""
    for path in ("model.layers", "transformer.h", "model.language_model.layers", "layers", "h"):
        obj = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ValueError(f"unsupported model {type(model).__name__}: no decoder layer list found")


@dataclass(frozen=True)
class ModelSites:
    attn_out: list[nn.Module]  # per layer: o_proj (nn.Linear) or c_proj (Conv1D)
    attn_in: list[nn.Module]  # per layer: input norm; its output is resid_pre_attn
    n_layers: int
    n_heads: int
    head_dim: int
    d_model: int

    @staticmethod
    def of(model: nn.Module) -> "ModelSites":
        name = type(model).__name__
        layers = decoder_layers(model)
        outs, ins = [], []
        for layer in layers:
            attn = getattr(layer, "self_attn", None) or getattr(layer, "attn", None)
            out = getattr(attn, "o_proj", None) or getattr(attn, "c_proj", None)
            norm = getattr(layer, "input_layernorm", None) or getattr(layer, "ln_1", None)
            if not isinstance(out, (nn.Linear, Conv1D)) or norm is None:
                raise ValueError(f"unsupported model {name}: no o_proj/c_proj Linear/Conv1D "
                                 f"and input norm in {type(layer).__name__}")
            outs.append(out)
            ins.append(norm)
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        n_heads, d_model = cfg.num_attention_heads, cfg.hidden_size
        head_dim = getattr(cfg, "head_dim", None) or d_model // n_heads
        w = outs[0].weight
        in_features = w.shape[1] if isinstance(outs[0], nn.Linear) else w.shape[0]
        if in_features != n_heads * head_dim:
            raise ValueError(f"{name}: projection input {in_features} != n_heads*head_dim "
                             f"= {n_heads}*{head_dim}")
        return ModelSites(outs, ins, len(layers), n_heads, head_dim, d_model)

    def _w(self, layer: int) -> Tensor:
        """W_O as [H, hd, d_model] (Linear stores [d_model, H*hd]; Conv1D stores [H*hd, d_model])."""
        m = self.attn_out[layer]
        if isinstance(m, nn.Linear):
            return m.weight.view(self.d_model, self.n_heads, self.head_dim).permute(1, 2, 0)
        return m.weight.view(self.n_heads, self.head_dim, self.d_model)

    def per_head(self, layer: int, z: Tensor) -> Tensor:
        """z [..., H*hd] -> head outputs [..., H, d_model] (no bias)."""
        return torch.einsum("...hk,hkd->...hd", z.unflatten(-1, (self.n_heads, self.head_dim)), self._w(layer))

    def project(self, layer: int, z: Tensor) -> Tensor:
        """z [..., H*hd] -> z @ W_O (no bias) = sum of head outputs."""
        w = self._w(layer).reshape(self.n_heads * self.head_dim, self.d_model)
        return z @ w


def last_token_index(attention_mask: Tensor) -> Tensor:
    """Index of the last position with mask 1 per row; right for left and right padding."""
    m = attention_mask.long()
    return m.shape[1] - 1 - m.flip(1).argmax(1)


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Position ids that ignore (left) padding, as HF generate computes them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


# Hook sites, named as TransformerLens names its hook points (blocks.{layer}.<hook>).
ATTN_OUT = "hook_attn_out"  # the attention output projection: its input z per head, its output edited
LN1 = "ln1.hook_normalized"  # the input norm's output: resid_pre_attn, the input of q_proj


@dataclass(frozen=True)
class Site:
    layer: int
    hook: Literal["hook_attn_out", "ln1.hook_normalized"]

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.{self.hook}"

    def module(self, sites: ModelSites) -> nn.Module:
        return (sites.attn_out if self.hook == ATTN_OUT else sites.attn_in)[self.layer]


@dataclass
class Trace:
    sites: ModelSites
    heads: dict[int, Tensor] = field(default_factory=dict)
    resid: dict[int, Tensor] = field(default_factory=dict)
    attn_out: dict[int, Tensor] = field(default_factory=dict)  # graph-attached projection outputs
    applied: list[tuple[int, int, str]] = field(default_factory=list)
    hooks: dict[str, object] = field(default_factory=dict)  # site name -> its hook, while the context is open


def _check_pos(pos: Positions, b: int, s: int, device) -> Positions:
    if isinstance(pos, str):
        if pos != "all":
            raise ValueError(f"positions must be a LongTensor [batch] or 'all', got {pos!r}")
        return pos
    pos = pos.to(device=device, dtype=torch.long)
    if pos.shape != (b,) or (pos < 0).any() or (pos >= s).any():
        raise ValueError(f"positions {tuple(pos.shape)} invalid for batch {b}, seq_len {s}")
    return pos


def _rows(x: Tensor, pos: Positions) -> Tensor:
    """x [b, s, ...] -> x[b, pos_b, ...] (or x itself for 'all')."""
    return x if isinstance(pos, str) else x[torch.arange(x.shape[0], device=x.device), pos]


def _add_at(out: Tensor, delta: Tensor, pos: Positions) -> Tensor:
    """Return out + delta at positions (no in-place change of `out`)."""
    if isinstance(pos, str):
        return out + delta
    idx = (torch.arange(out.shape[0], device=out.device), pos)
    return out.index_put(idx, delta.expand(out.shape[0], out.shape[-1]).to(out.dtype), accumulate=True)


def _value(e: HeadEdit, pos: Positions, b: int, s: int, ref: Tensor, d: int) -> Tensor:
    """Edit value broadcast to [b, n, d] (tensor positions) or [b, s, n, d] ('all')."""
    if e.value is None:
        raise ValueError(f"HeadEdit mode {e.mode!r} needs a value")
    v = e.value.to(device=ref.device, dtype=ref.dtype)
    v = v if v.dim() >= 2 else v[None]
    shape = (b, len(e.heads), d) if not isinstance(pos, str) else (b, s, len(e.heads), d)
    return torch.broadcast_to(v, shape)


def _touched(epos: Positions, rpos: Positions, s: int, device) -> Tensor | None:
    """Bool mask over the read layout of the sites an edit at `epos` touches (None = everywhere)."""
    if isinstance(epos, str):
        return None
    if isinstance(rpos, str):
        return torch.arange(s, device=device)[None] == epos[:, None]
    return rpos == epos


def _align(x: Tensor, epos: Positions, rpos: Positions, s: int):
    """Map x laid out for edit positions onto the read layout; also return _touched's mask."""
    if isinstance(epos, str):
        return _rows(x, rpos), None
    return (x[:, None] if isinstance(rpos, str) else x), _touched(epos, rpos, s, x.device)


def _check_edits(sites: ModelSites, head_edits, residual_edits) -> None:
    for e in list(head_edits) + list(residual_edits):
        if not 0 <= e.layer < sites.n_layers:
            raise ValueError(f"layer {e.layer} out of range [0, {sites.n_layers})")
        v = getattr(e, "vector", getattr(e, "value", None))
        if v is not None and v.shape[-1] != sites.d_model:
            raise ValueError(f"edit vector last dim {v.shape[-1]} != d_model {sites.d_model}")
    seen: dict[int, list[tuple[str, set]]] = {}
    for e in head_edits:
        if e.mode not in ("zero", "replace", "add"):
            raise ValueError(f"unknown HeadEdit mode {e.mode!r}")
        hs = set(int(h) for h in e.heads)
        if any(not 0 <= h < sites.n_heads for h in hs) or len(hs) != len(e.heads):
            raise ValueError(f"bad heads {list(e.heads)} for n_heads={sites.n_heads}")
        for mode, other in seen.setdefault(e.layer, []):
            # closed-form edits are relative to the original a_j: overlapping "set" edits are ambiguous
            if hs & other and not mode == e.mode == "add":
                raise ValueError(f"layer {e.layer}: head(s) {sorted(hs & other)} edited twice")
        seen[e.layer].append((e.mode, hs))


class AttnOutHook:
    """Forward hook at blocks.{layer}.hook_attn_out: applies the layer's head and residual edits to the
    projection output, then (first call only) reads the head outputs after those edits and/or keeps the
    output with its graph. `calls` counts forward calls since the hook was made; call 0 is the prefill."""

    def __init__(self, t: Trace, layer: int, head_edits: Sequence[HeadEdit] = (),
                 residual_edits: Sequence[ResidualEdit] = (), read_heads_at: Positions | None = None,
                 keep_output: bool = False):
        self.t, self.sites, self.layer = t, t.sites, layer
        self.head_edits = [e for e in head_edits if e.layer == layer]
        self.residual_edits = [e for e in residual_edits if e.layer == layer]
        self.read_heads_at, self.keep_output = read_heads_at, keep_output  # read_heads_at None: no head read
        self.calls = 0

    def attach(self, module: nn.Module):
        return module.register_forward_hook(self, with_kwargs=True)

    def __call__(self, mod, args, kwargs, out):
        call, self.calls = self.calls, self.calls + 1
        z = args[0] if args else next(iter(kwargs.values()))
        b, s = z.shape[:2]
        done = []  # (edit, its positions, value in edit layout) for the post-edit read
        for e in self.head_edits:
            if e.prefill_only and call > 0:
                continue
            pos = _check_pos(e.positions, b, s, z.device)
            out, v = self._edit_heads(e, z, out, pos)
            done.append((e, pos, v))
            self.t.applied.append((self.layer, call, e.mode))
        for e in self.residual_edits:
            if e.prefill_only and call > 0:
                continue
            pos = _check_pos(e.positions, b, s, z.device)
            out = _add_at(out, (e.scale * e.vector).to(device=out.device, dtype=out.dtype), pos)
            self.t.applied.append((self.layer, call, "residual"))
        if self.read_heads_at is not None and call == 0:
            self.t.heads[self.layer] = self._read_heads(z, done)
        if self.keep_output and call == 0:
            self.t.attn_out[self.layer] = out
        return out

    def _edit_heads(self, e: HeadEdit, z: Tensor, out: Tensor, pos: Positions) -> tuple[Tensor, Tensor | None]:
        """out + sum_j (new_j - a_j) over the edit's heads at `pos`; also the value in edit layout."""
        sites, delta = self.sites, None
        if e.mode in ("zero", "replace"):
            mask = torch.zeros(sites.n_heads, 1, dtype=z.dtype, device=z.device)
            mask[[int(h) for h in e.heads]] = 1
            zr = (_rows(z, pos).unflatten(-1, (sites.n_heads, sites.head_dim)) * mask).flatten(-2)
            delta = -sites.project(self.layer, zr)
        v = _value(e, pos, z.shape[0], z.shape[1], z, sites.d_model) if e.mode != "zero" else None
        if v is not None:
            delta = v.sum(-2) if delta is None else delta + v.sum(-2)
        return _add_at(out, delta, pos), v

    def _read_heads(self, z: Tensor, done) -> Tensor:
        """Head outputs at `read_heads_at`, with the edits in `done` applied where they touched."""
        s = z.shape[1]
        rpos = _check_pos(self.read_heads_at, z.shape[0], s, z.device)
        r = self.sites.per_head(self.layer, _rows(z.detach(), rpos))
        for e, epos, v in done:
            hs = [int(h) for h in e.heads]
            cur = r[..., hs, :]
            new = torch.zeros_like(cur)
            if v is not None:
                va, m = _align(v.detach(), epos, rpos, s)
                new = va + (cur if e.mode == "add" else 0)
            else:
                m = _touched(epos, rpos, s, cur.device)
            r[..., hs, :] = new if m is None else torch.where(m[..., None, None], new, cur)
        return r


class ResidReadHook:
    """Forward hook at blocks.{layer}.ln1.hook_normalized: keeps the input norm's output (resid_pre_attn)
    at `positions`, detached, on the first call."""

    def __init__(self, t: Trace, layer: int, positions: Positions):
        self.t, self.layer, self.positions = t, layer, positions
        self.calls = 0

    def attach(self, module: nn.Module):
        return module.register_forward_hook(self)

    def __call__(self, mod, args, out):
        call, self.calls = self.calls, self.calls + 1
        if call == 0:
            h = out[0] if isinstance(out, tuple) else out
            rpos = _check_pos(self.positions, h.shape[0], h.shape[1], h.device)
            self.t.resid[self.layer] = _rows(h.detach(), rpos).clone()


def _site_hooks(t: Trace, read_heads: set[int], read_resid: set[int], positions: Positions,
                resid_positions: Positions, read_attn_out: set[int], head_edits, residual_edits) -> dict:
    """Site -> hook for every site a trace reads or edits."""
    edited = {e.layer for e in list(head_edits) + list(residual_edits)}
    hooks = {Site(l, ATTN_OUT): AttnOutHook(t, l, head_edits, residual_edits,
                                            read_heads_at=positions if l in read_heads else None,
                                            keep_output=l in read_attn_out)
             for l in sorted(read_heads | edited | read_attn_out)}
    hooks.update({Site(l, LN1): ResidReadHook(t, l, resid_positions) for l in sorted(read_resid)})
    return hooks


@contextmanager
def trace(model: nn.Module, *, read_heads: Sequence[int] | None = None,
          read_resid: Sequence[int] | None = None, positions: Positions = "all",
          resid_positions: Positions | None = None, read_attn_out: Sequence[int] = (),
          head_edits: Sequence[HeadEdit] = (), residual_edits: Sequence[ResidualEdit] = ()) -> Iterator[Trace]:
    """Install read/edit hooks for the duration of the block; see module docstring.

    `positions` selects where heads (and, unless `resid_positions` is given, residuals) are read,
    so one forward can read heads at the last prompt token and residuals at the last user token.
    `read_attn_out` layers keep their whole projection output WITH its autograd graph (not detached),
    for gradients with respect to the attention output (attribution patching).
    """
    resid_positions = positions if resid_positions is None else resid_positions
    sites = ModelSites.of(model)
    _check_edits(sites, head_edits, residual_edits)
    read_heads, read_resid = set(read_heads or ()), set(read_resid or ())
    for l in read_heads | read_resid:
        if not 0 <= l < sites.n_layers:
            raise ValueError(f"read layer {l} out of range [0, {sites.n_layers})")
    t = Trace(sites)
    hooks = _site_hooks(t, read_heads, read_resid, positions, resid_positions, set(read_attn_out),
                        head_edits, residual_edits)
    handles = []
    try:
        for site, hook in hooks.items():
            handles.append(hook.attach(site.module(sites)))
            t.hooks[site.name] = hook
        yield t
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def head_outputs(model: nn.Module, input_ids: Tensor, attention_mask: Tensor,
                 positions: Positions | None = None, layers: Sequence[int] | None = None
                 ) -> dict[int, Tensor]:
    """One forward; head outputs per layer at `positions` (default: last real token)."""
    sites = ModelSites.of(model)
    pos = last_token_index(attention_mask) if positions is None else positions
    with trace(model, read_heads=range(sites.n_layers) if layers is None else layers, positions=pos) as t:
        model(input_ids=input_ids, attention_mask=attention_mask,
              position_ids=position_ids_from_mask(attention_mask))
    return t.heads


# Decoder families whose first layer sees exactly the token embedding (no scaling, no position
# embedding added outside the layers), so a forward can start at layer l from a given residual.
_STARTABLE_MODEL_TYPES = {"llama", "qwen2", "qwen3", "mistral"}


def can_start_at_layer(model: nn.Module) -> bool:
    inner = getattr(model, "model", None)
    return (getattr(model.config, "model_type", None) in _STARTABLE_MODEL_TYPES
            and isinstance(getattr(inner, "layers", None), nn.ModuleList) and hasattr(inner, "embed_tokens"))


@contextmanager
def record_layer_inputs(model: nn.Module) -> Iterator[dict[int, Tensor]]:
    """Record the residual stream entering every decoder layer (first call of each layer)."""
    layers = model.model.layers
    inputs: dict[int, Tensor] = {}

    def pre_hook(l):
        def hook(mod, args, kwargs):
            if l not in inputs:
                inputs[l] = (args[0] if args else kwargs["hidden_states"]).detach()
        return hook

    handles = [layer.register_forward_pre_hook(pre_hook(l), with_kwargs=True) for l, layer in enumerate(layers)]
    try:
        yield inputs
    finally:
        for h in handles:
            h.remove()


@contextmanager
def start_at_layer(model: nn.Module, layer: int, hidden: Tensor) -> Iterator[None]:
    """Run the next forward from decoder layer `layer`, with `hidden` [b, s, d] as that layer's input.

    Layers below `layer` are skipped: their output for these tokens is `hidden`, recorded from an
    unedited run (valid when every edit is at `layer` or above). The embedding's output is swapped
    for `hidden`, and the layer list is cut; both are restored on exit. Attention modules index the
    KV cache by their own layer_idx, so a full-depth cache stays consistent.
    """
    if not can_start_at_layer(model):
        raise ValueError(f"{type(model).__name__}: starting at a layer is supported for "
                         f"{sorted(_STARTABLE_MODEL_TYPES)} only")
    inner = model.model
    full = inner.layers
    handle = inner.embed_tokens.register_forward_hook(lambda mod, args, out: hidden.to(out.dtype))
    inner.layers = nn.ModuleList(list(full)[layer:])
    try:
        yield
    finally:
        inner.layers = full
        handle.remove()
