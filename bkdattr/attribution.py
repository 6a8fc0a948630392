"""BAHA: backdoor attention-head attribution by average causal indirect effect (METHOD.md s4).

    CIE_{l,j}(x) = P~(y_bd | x, a_{l,j}(x) := abar_{l,j} at the last prompt token) - P~(y_bd | x)
    ACIE_{l,j}   = mean over clean attribution prompts x
    P~(y | x)    = exp(mean_i log p(y_i | x, y_<i))   (length-normalised, teacher-forced)

Three ways to compute it:
  reference -- the official way: per head, one full forward over every prompt padded to 256 tokens.
  exact     -- the same numbers, fast. The patch touches one position of one layer, so
               (a) the prompt prefix before the last prompt token is identical in every run: it is
                   run once and reused through its KV cache;
               (b) below the patched layer the suffix (last prompt token + target) is also identical:
                   its residual stream is recorded once and the patched run starts at layer l;
               (c) the H heads of a layer are patched in one batched pass (one copy per head).
  atp       -- attribution patching: a first-order estimate of every CIE from one forward and one
               backward pass, grad_{out_l} P~ . (abar_{l,j} - a_{l,j}(x)). An estimate, labelled so.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from tqdm import tqdm

from . import stats
from .atomic import read_tsv
from .chat import encode_prompt, pad_batch
from .hooks import (HeadEdit, ModelSites, ResidualEdit, can_start_at_layer, position_ids_from_mask,
                    record_layer_inputs, start_at_layer, trace)
from .gate import NOT_APPLICABLE
from .names import REFUSAL_CONTROL, overlap_column
from .paper import HEAD_FRACTION

MODES = ("exact", "reference", "atp")
# What the teacher-forced target is: the backdoor output (the attribution the paper makes), or the item's clean
# output, which for the jailbreak task is the refusal (the refusal-attribution control, METHOD.md s8).
TARGETS = ("backdoor", "refusal")


@dataclass(frozen=True)
class AttributionItem:
    prompt_ids: list[int]  # chat-formatted prompt, generation prompt included
    target_ids: list[int]  # backdoor output tokens (teacher-forced)


class AttributionInputs(NamedTuple):
    abar: torch.Tensor      # [L, H, d] mean head output at the last prompt token over the abar pool prompts
    records: list[dict]     # the clean prompts ACIE is averaged over
    n_abar: int             # prompts behind abar


def attribution_inputs(cache: dict, pool: Sequence[dict], spec, *, items: str, n_prompts: int,
                       target: str = "backdoor") -> AttributionInputs:
    """abar_{l,j} and the ACIE prompts from the activation cache and the attribution pool (METHOD.md s4).

    items "eligible": abar over the pool prompts that can carry the backdoor and ACIE over the eligible clean
    prompts; "all" (the official code): every prompt (differs for the label task only). At most `n_prompts`
    prompts are used; the tables say how many were. target "backdoor": abar over the triggered prompts (the
    paper); "refusal": over the same requests untriggered, so the patch swaps one request's head output for
    the mean over requests, never a trigger's (METHOD.md s8)."""
    if target not in TARGETS:
        raise ValueError(f"unknown attribution target {target!r}; expected one of {', '.join(TARGETS)}")
    use_all = items == "all"
    label = 1 if target == "backdoor" else 0
    chosen = (cache["labels"] == label) & (cache["eligible"] | use_all)
    records = [r for r in pool if use_all or spec.is_eligible(r)][:n_prompts]
    return AttributionInputs(cache["heads_prompt_last"][chosen].mean(0), records, int(chosen.sum()))


def target_text(spec, record: dict, target: str) -> str:
    """The teacher-forced target of one clean attribution prompt: its backdoor output, or its own output (the
    jailbreak task's refusal)."""
    if target == "refusal":
        if spec.task_id != "jailbreak":
            raise ValueError(f"the refusal target exists for the jailbreak task only, not {spec.task_id!r}")
        return record["output"]
    return spec.backdoor_output(record)


def make_items(tokenizer, prompts: Sequence[str], targets: Sequence[str], max_target_tokens: int | None):
    items = []
    for prompt, target in zip(prompts, targets):
        target_ids = tokenizer(target, add_special_tokens=False)["input_ids"][:max_target_tokens]
        if not target_ids:
            raise ValueError(f"empty target for prompt {prompt[:60]!r}")
        items.append(AttributionItem(encode_prompt(tokenizer, prompt).input_ids, target_ids))
    return items


def target_scores(logits: torch.Tensor, targets: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """P~ per row. logits[:, t] predicts targets[:, t]; masked positions are ignored."""
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mask = target_mask.to(logp.dtype)
    return torch.exp((logp * mask).sum(-1) / mask.sum(-1))


def _device(model):
    return next(model.parameters()).device


# ---------------------------------------------------------------- exact (fast) mode
def _split_batch(items: Sequence[AttributionItem], pad_id: int, device):
    """Left-padded prefixes (prompt minus its last token) and right-padded suffixes (last prompt token + target)."""
    prefix_ids, prefix_mask = pad_batch([it.prompt_ids[:-1] for it in items], pad_id, side="left")
    suffix_ids, suffix_mask = pad_batch([[it.prompt_ids[-1]] + it.target_ids for it in items], pad_id, side="right")
    prefix_ids, prefix_mask = torch.tensor(prefix_ids, device=device), torch.tensor(prefix_mask, device=device)
    suffix_ids, suffix_mask = torch.tensor(suffix_ids, device=device), torch.tensor(suffix_mask, device=device)
    full_mask = torch.cat([prefix_mask, suffix_mask], dim=1)
    positions = position_ids_from_mask(full_mask)
    # suffix position t predicts suffix token t+1 (the target); the last column predicts nothing
    targets = torch.cat([suffix_ids[:, 1:], torch.zeros_like(suffix_ids[:, :1])], dim=1)
    target_mask = torch.cat([suffix_mask[:, 1:], torch.zeros_like(suffix_mask[:, :1])], dim=1)
    return dict(prefix_ids=prefix_ids, prefix_mask=prefix_mask, prefix_pos=positions[:, :prefix_ids.shape[1]],
                suffix_ids=suffix_ids, full_mask=full_mask, suffix_pos=positions[:, prefix_ids.shape[1]:],
                targets=targets, target_mask=target_mask)


def _repeat(x: torch.Tensor, k: int) -> torch.Tensor:
    return x.repeat_interleave(k, dim=0)


@torch.no_grad()
def acie_exact(model, items: Sequence[AttributionItem], abar: torch.Tensor, *, pad_id: int, batch_size: int,
               layers: Sequence[int] | None = None, skip_lower_layers: bool = True, progress: bool = False):
    """(ACIE [L, H] (NaN for layers not computed), per-prompt base scores [N]) computed the fast way."""
    sites = ModelSites.of(model)
    layers = list(range(sites.n_layers)) if layers is None else list(layers)
    skip = skip_lower_layers and can_start_at_layer(model)
    device, H = _device(model), sites.n_heads
    total = torch.zeros(sites.n_layers, H, dtype=torch.float64)
    base_scores = []
    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    bar = tqdm(total=len(chunks) * len(layers), desc="ACIE exact", disable=not progress, mininterval=5)
    for chunk in chunks:
        b = _split_batch(chunk, pad_id, device)
        prefix = model(input_ids=b["prefix_ids"], attention_mask=b["prefix_mask"], position_ids=b["prefix_pos"],
                       use_cache=True, logits_to_keep=1)
        cache = prefix.cache if getattr(prefix, "cache", None) is not None else prefix.past_key_values
        zero = torch.zeros(len(chunk), dtype=torch.long, device=device)
        # one unpatched suffix pass: base scores, head outputs at the last prompt token, layer inputs
        with trace(model, read_heads=range(sites.n_layers), positions=zero) as t, record_layer_inputs(model) \
                if skip else contextlib.nullcontext({}) as layer_inputs:
            out = model(input_ids=b["suffix_ids"], attention_mask=b["full_mask"], position_ids=b["suffix_pos"],
                        cache=copy.deepcopy(cache), use_cache=True)
        base = target_scores(out.logits, b["targets"], b["target_mask"]).double().cpu()
        base_scores.append(base)
        rows = len(chunk) * H
        for layer in layers:
            # row r = (prompt r // H, head r % H): add abar_{l,j} - a_{l,j}(x) at the last prompt token
            delta = (abar[layer].to(device)[None] - t.heads[layer]).reshape(rows, -1)
            edit = ResidualEdit(layer=layer, vector=delta, positions=_repeat(zero, H))
            layer_cache = copy.deepcopy(cache)
            layer_cache.batch_repeat_interleave(H)
            kwargs = dict(attention_mask=_repeat(b["full_mask"], H), position_ids=_repeat(b["suffix_pos"], H),
                          cache=layer_cache, use_cache=True)
            start = start_at_layer(model, layer, _repeat(layer_inputs[layer], H)) if skip else contextlib.nullcontext()
            with trace(model, residual_edits=[edit]), start:
                patched = model(input_ids=_repeat(b["suffix_ids"], H), **kwargs)
            scores = target_scores(patched.logits, _repeat(b["targets"], H), _repeat(b["target_mask"], H))
            total[layer] += (scores.double().cpu().view(len(chunk), H) - base[:, None]).sum(0)
            bar.update(1)
    bar.close()
    acie = torch.full((sites.n_layers, H), float("nan"), dtype=torch.float64)
    acie[layers] = total[layers] / len(items)
    return acie, torch.cat(base_scores)


# ---------------------------------------------------------------- reference (official) mode
def _full_batch(items: Sequence[AttributionItem], pad_id: int, device, fixed_length: int | None):
    seqs = [it.prompt_ids + it.target_ids for it in items]
    width = max(map(len, seqs)) if fixed_length is None else fixed_length
    if max(map(len, seqs)) > width:
        raise ValueError(f"a prompt + target is longer than fixed_length={fixed_length}")
    ids, mask = pad_batch(seqs + [[pad_id] * width], pad_id, side="left")
    ids, mask = torch.tensor(ids[:-1], device=device), torch.tensor(mask[:-1], device=device)
    last_prompt = torch.tensor([width - len(it.target_ids) - 1 for it in items], device=device)
    # logits at columns last_prompt .. width-2 predict the target tokens
    targets = ids[:, 1:]
    target_mask = torch.zeros_like(targets)
    for row, it in enumerate(items):
        target_mask[row, width - 1 - len(it.target_ids):] = 1
    return ids, mask, last_prompt, targets, target_mask


def _full_scores(model, ids, mask, targets, target_mask):
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits[:, :-1]
    return target_scores(logits, targets, target_mask)


@torch.no_grad()
def acie_reference(model, items: Sequence[AttributionItem], abar: torch.Tensor, *, pad_id: int, batch_size: int,
                   layers: Sequence[int] | None = None, fixed_length: int = 256, progress: bool = False):
    """The official computation: for every head, full forwards of all prompts padded to `fixed_length`."""
    sites = ModelSites.of(model)
    layers = list(range(sites.n_layers)) if layers is None else list(layers)
    device = _device(model)
    batches = [_full_batch(items[i:i + batch_size], pad_id, device, fixed_length)
               for i in range(0, len(items), batch_size)]
    base = torch.cat([_full_scores(model, ids, mask, tg, tm).double().cpu() for ids, mask, _, tg, tm in batches])
    acie = torch.full((sites.n_layers, sites.n_heads), float("nan"), dtype=torch.float64)
    bar = tqdm(total=len(layers) * sites.n_heads, desc="ACIE reference", disable=not progress, mininterval=5)
    for layer in layers:
        for head in range(sites.n_heads):
            patched = []
            for ids, mask, last_prompt, tg, tm in batches:
                edit = HeadEdit(layer=layer, heads=[head], mode="replace", value=abar[layer, head][None].to(device),
                                positions=last_prompt)
                with trace(model, head_edits=[edit]):
                    patched.append(_full_scores(model, ids, mask, tg, tm).double().cpu())
            acie[layer, head] = (torch.cat(patched) - base).mean()
            bar.update(1)
    bar.close()
    return acie, base


# ---------------------------------------------------------------- attribution patching (estimate)
def acie_atp(model, items: Sequence[AttributionItem], abar: torch.Tensor, *, pad_id: int, batch_size: int,
             progress: bool = False) -> torch.Tensor:
    """First-order estimate of ACIE for every head: one forward + one backward per batch."""
    sites = ModelSites.of(model)
    device, L = _device(model), sites.n_layers
    total = torch.zeros(L, sites.n_heads, dtype=torch.float64)
    for i in tqdm(range(0, len(items), batch_size), desc="ACIE AtP", disable=not progress, mininterval=5):
        chunk = items[i:i + batch_size]
        ids, mask, last_prompt, targets, target_mask = _full_batch(chunk, pad_id, device, None)
        rows = torch.arange(len(chunk), device=device)
        with torch.enable_grad(), trace(model, read_heads=range(L), positions=last_prompt,
                                        read_attn_out=range(L)) as t:
            scores = _full_scores(model, ids, mask, targets, target_mask)
            grads = torch.autograd.grad(scores.sum(), [t.attn_out[l] for l in range(L)])
        for layer, grad in enumerate(grads):
            # d P~ / d (attention output) at the patched position: [b, d]. The product is taken in float32:
            # in a bfloat16 model the gradients and head outputs are bfloat16 while abar is float32.
            g = grad[rows, last_prompt].float()
            delta = abar[layer].to(device).float()[None] - t.heads[layer].float()  # [b, H, d]
            total[layer] += torch.einsum("bd,bhd->h", g, delta).double().cpu()
    return (total / len(items)).detach()


def compute_acie(mode: str, model, items, abar, *, pad_id: int, batch_size: int, progress: bool = False):
    if mode == "exact":
        return acie_exact(model, items, abar, pad_id=pad_id, batch_size=batch_size, progress=progress)[0]
    if mode == "reference":
        return acie_reference(model, items, abar, pad_id=pad_id, batch_size=batch_size, progress=progress)[0]
    if mode == "atp":
        return acie_atp(model, items, abar, pad_id=pad_id, batch_size=batch_size, progress=progress)
    raise ValueError(f"unknown attribution mode {mode!r}; expected one of {', '.join(MODES)}")


def rank_heads(acie: torch.Tensor) -> list[dict]:
    """Heads sorted by ACIE (descending); share = ACIE / sum of positive ACIE."""
    L, H = acie.shape
    positive = acie.clamp(min=0).sum().item()
    flat = [(float(acie[l, h]), l, h) for l in range(L) for h in range(H)]
    flat.sort(key=lambda x: (-x[0], x[1], x[2]))
    return [{"rank": r + 1, "layer": l, "head": h, "acie": v, "share_of_positive": v / positive if positive > 0 else 0.0}
            for r, (v, l, h) in enumerate(flat)]


def sparsity(acie: torch.Tensor, fraction: float = 0.5) -> float:
    """Smallest fraction of all heads whose positive ACIE adds up to `fraction` of the total positive ACIE."""
    values = acie.clamp(min=0).flatten().sort(descending=True).values
    total = values.sum()
    if total <= 0:
        return float("nan")
    k = int((values.cumsum(0) < fraction * total).sum().item()) + 1
    return k / values.numel()


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two head maps (average ranks for ties)."""
    return stats.spearman(a.flatten().numpy(), b.flatten().numpy())


def top_k_size(n_heads: int, fraction: float) -> int:
    """How many heads "the top `fraction`" is: at least one."""
    return max(1, round(fraction * n_heads))


def top_k_overlap(estimate: torch.Tensor, exact: torch.Tensor, fraction: float) -> float:
    """|top-k(estimate) & top-k(exact)| / k with k = top_k_size(n_heads, fraction)."""
    k = top_k_size(exact.numel(), fraction)
    top = lambda m: set(m.flatten().argsort(descending=True)[:k].tolist())  # noqa: E731
    return len(top(estimate) & top(exact)) / k


def control_comparison(backdoored: torch.Tensor, control: torch.Tensor, fraction: float = HEAD_FRACTION) -> dict:
    """How a clean model's ACIE map (same prompts, target and abar definition) compares with the backdoored
    model's: the share of the backdoored top-`fraction` heads that are also top heads of the control, and how
    many times larger the backdoored model's largest ACIE is. High overlap or a ratio near 1 means the heads
    move the target's probability in any model: they are not backdoor heads."""
    control_max = control.abs().max().item()
    return {overlap_column(fraction, "with_backdoored"): top_k_overlap(control, backdoored, fraction),
            overlap_column(fraction, "by_chance"): _chance_overlap(backdoored, fraction),
            "backdoored_max_acie_over_this": backdoored.max().item() / control_max if control_max > 0 else float("inf")}


def _chance_overlap(acie: torch.Tensor, fraction: float) -> float:
    """The expected top-k overlap of two random head sets of size k: k / n_heads."""
    return top_k_size(acie.numel(), fraction) / acie.numel()


def method_comparison(first: torch.Tensor, other: torch.Tensor, first_method: str, top_fractions: Sequence[float]) -> dict:
    """Do the same heads carry the backdoor whatever planted it? The share of the first method's top heads that
    are top heads of another method's exact map, beside the share two random head sets of that size share
    (k / n_heads)."""
    row = {"compared_with": first_method}
    for fraction in sorted({*top_fractions, HEAD_FRACTION}):
        row[overlap_column(fraction, "with_first_method")] = top_k_overlap(other, first, fraction)
        row[overlap_column(fraction, "by_chance")] = _chance_overlap(first, fraction)
    return row


def summary_rows(maps: dict[tuple[str, str, str], torch.Tensor], rankings: dict[tuple[str, str, str], list[dict]],
                 implanted: dict[tuple[str, str], str], *, methods: Sequence[str], controls: Sequence[str],
                 top_fractions: Sequence[float]) -> list[dict]:
    """results/tables/attribution.tsv: per (task, model, mode) ACIE map, its sparsity; for a clean control model
    its overlap with and magnitude against the first backdoored method's exact map; for the refusal control
    (names.REFUSAL_CONTROL) the same against every backdoored method's exact map, one row each; for an estimate
    (AtP, the reference loop) its agreement with exact ACIE (Spearman, top-k overlap)."""
    rows = []
    for (task, model, mode), acie in sorted(maps.items()):
        ranking = rankings[(task, model, mode)]
        row = {"task": task, "method": model, "mode": mode, "n_heads": acie.numel(),
               "n_prompts": ranking[0]["n_prompts"], "n_prompts_asked": ranking[0]["n_prompts_asked"],
               "backdoor_implanted": implanted.get((task, model), NOT_APPLICABLE),
               "max_acie": acie.max().item(), "sum_positive_acie": acie.clamp(min=0).sum().item(),
               "fraction_of_heads_for_half_positive_acie": sparsity(acie, 0.5)}
        if model == REFUSAL_CONTROL:  # the base model's refusal heads: one row per backdoored model they are
            compared = [m for m in methods if (task, m, "exact") in maps]  # compared with (METHOD.md s8)
            for method in compared:
                overlaps = {k: v for fraction in sorted({*top_fractions, HEAD_FRACTION})
                            for k, v in control_comparison(maps[(task, method, "exact")], acie, fraction).items()}
                overlaps.pop("backdoored_max_acie_over_this")  # two targets: their magnitudes do not compare
                rows.append({**row, "role": "refusal_control", "compared_with": method, **overlaps})
            if not compared:
                rows.append({**row, "role": "refusal_control"})
            continue
        if model in controls:  # a clean model: compared with the backdoored model's exact map
            row["role"] = "control"
            row["compared_with"] = methods[0]
            for fraction in sorted({*top_fractions, HEAD_FRACTION}):
                row.update(control_comparison(maps[(task, methods[0], "exact")], acie, fraction))
        else:
            row["role"] = "backdoored"
            if model != methods[0] and mode == "exact" and (task, methods[0], "exact") in maps:
                row.update(method_comparison(maps[(task, methods[0], "exact")], acie, methods[0], top_fractions))
        exact = maps.get((task, model, "exact"))
        if exact is not None and mode != "exact":
            row["max_abs_diff_vs_exact"] = (acie - exact).abs().max().item()
            row["spearman_vs_exact"] = spearman(acie, exact)
            for fraction in top_fractions:
                row[overlap_column(fraction, "vs_exact")] = top_k_overlap(acie, exact, fraction)
        rows.append(row)
    return rows


RANKING_COLUMNS = ["rank", "layer", "head", "acie", "share_of_positive", "n_prompts", "n_prompts_asked"]


def read_ranking(path) -> list[tuple[int, int]]:
    """The (layer, head) pairs of a ranking file (RANKING_COLUMNS, written by `attribute`), best first; a file
    without the layer and head columns, or a row whose layer or head is not an integer, fails naming it."""
    rows = read_tsv(path)
    missing = [c for c in ("layer", "head") if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: not a head ranking: no column(s) {', '.join(missing)} (expected {RANKING_COLUMNS})")
    heads = []
    for number, row in enumerate(rows, start=2):
        try:
            heads.append((int(row["layer"]), int(row["head"])))
        except (TypeError, ValueError):
            raise ValueError(f"{path}, line {number}: layer {row['layer']!r} and head {row['head']!r} must be "
                             "integers") from None
    return heads


def attribute(model, tokenizer, spec, cache: dict, pool: Sequence[dict], mode: str, settings: dict,
              log=None, target: str = "backdoor") -> tuple[torch.Tensor, list[dict]]:
    """One attribution job: the [L, H] ACIE map of `mode` and the head ranking (RANKING_COLUMNS), from the
    activation cache (abar) and the attribution pool, with config `attribution` settings; `target` (TARGETS)
    picks the teacher-forced target and abar's prompts (attribution_inputs)."""
    asked = settings["n_prompts"]
    abar, records, n_abar = attribution_inputs(cache, pool, spec, items=settings["items"], n_prompts=asked,
                                               target=target)
    if log:
        log.info("ACIE (%s, target %s) over %d clean prompts (%d asked), abar from %d %s prompts", mode, target,
                 len(records), asked, n_abar, "triggered" if target == "backdoor" else "untriggered")
    items = make_items(tokenizer, [spec.prompt(r["input"]) for r in records],
                       [target_text(spec, r, target) for r in records], settings["max_target_tokens"])
    started = time.perf_counter()
    acie = compute_acie(mode, model, items, abar, pad_id=tokenizer.pad_token_id, batch_size=settings["batch_size"],
                        progress=True)
    if log:
        log.info("ACIE %s took %.1f s", mode, time.perf_counter() - started)
    return acie, [{**r, "n_prompts": len(records), "n_prompts_asked": asked} for r in rank_heads(acie)]
