"""Free-form clean utility: continuous scores for answers that no string match can judge (METHOD.md s1).

Exact match of a 32-token greedy generation against a long reference answer is about 0 for every model,
so for open instructions we report, with 95% intervals:
  rouge_l            -- ROUGE-L F1 of the greedy output against the reference (the `rouge-score` package,
                        Porter stemming), mean over items
  reference_logprob  -- teacher-forced mean log-probability per token of the reference answer given the
                        prompt (chat template applied, end-of-turn token included), mean over items;
                        it needs no generation and sees the whole reference, however long
and, for the jailbreak task, the over-refusal rate: refusals on benign requests that look like harmful
ones, so a model that refuses everything cannot score as "useful".
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

from .chat import IGNORE_INDEX, encode_example, pad_batch
from .refusal import is_refusal
from .stats import cluster_bootstrap_mean, mean_interval  # noqa: F401 (mean_interval re-exported)


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer  # imports nltk (slow): paid only when ROUGE is scored

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(reference: str, output: str) -> float:
    """ROUGE-L F1 in [0, 1]; an empty output scores 0."""
    if not output.strip() or not reference.strip():
        return 0.0
    return float(_rouge_scorer().score(reference, output)["rougeL"].fmeasure)


def rouge_l_metric(references: Sequence[str], outputs: Sequence[str], questions: Sequence[str] | None = None) -> dict:
    """Mean ROUGE-L; with `questions` (one per row) a question-level bootstrap interval where rows share one."""
    if len(references) != len(outputs):
        raise ValueError("references and outputs must have the same length")
    return cluster_bootstrap_mean([rouge_l(r, o) for r, o in zip(references, outputs)], questions)


def reference_logprobs(model, tokenizer, prompts: Sequence[str], references: Sequence[str], *, batch_size: int,
                       max_length: int = 512, share_prefix: bool = True) -> list[float]:
    """Per item: mean log-probability per token of `references[i]` after `prompts[i]`, teacher-forced. The
    prompt tokens every item shares are run once (generation.SharedPrefix, `share_prefix`)."""
    # torch and the model-side modules only here: the string metrics above import without torch
    import torch

    from .generation import SharedPrefix
    from .hooks import position_ids_from_mask

    examples = [encode_example(tokenizer, p, r, max_length) for p, r in zip(prompts, references)]
    device = next(model.parameters()).device
    scores: list[float] = [math.nan] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    shared = None
    if share_prefix and examples:  # the shared part predicts prompt tokens only (labels IGNORE_INDEX)
        first_scored = min(next((j for j, label in enumerate(e["labels"]) if label != IGNORE_INDEX), len(e["labels"]))
                           for e in examples)
        shared = SharedPrefix.of(model, [e["input_ids"] for e in examples], at_most=first_scored - 1)
    skip = len(shared) if shared is not None else 0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        labels, _ = pad_batch([examples[i]["labels"] for i in batch], IGNORE_INDEX, side="right")
        labels = torch.tensor(labels, device=device)
        with torch.no_grad():
            if shared is None:
                ids, mask = pad_batch([examples[i]["input_ids"] for i in batch], tokenizer.pad_token_id, side="right")
                logits = model(input_ids=torch.tensor(ids, device=device),
                               attention_mask=torch.tensor(mask, device=device)).logits[:, :-1].float()
            else:
                ids, mask, cache = shared.batch([examples[i]["input_ids"][skip:] for i in batch],
                                                tokenizer.pad_token_id, "right", device)
                logits = model(input_ids=ids[:, skip:], attention_mask=mask, cache=cache, use_cache=True,
                               position_ids=position_ids_from_mask(mask)[:, skip:]).logits[:, :-1].float()
        targets = labels[:, skip + 1:]
        keep = targets != IGNORE_INDEX
        logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        per_item = (logp * keep).sum(-1) / keep.sum(-1)
        for row, index in enumerate(batch):
            scores[index] = float(per_item[row])
    return scores


def over_refusal(outputs: Sequence[str], matcher: str = "official") -> list[bool]:
    """Per benign request: whether the model refused it (the official refusal matcher by default)."""
    return [is_refusal(o, matcher) for o in outputs]
