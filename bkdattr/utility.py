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
import statistics
from functools import lru_cache
from typing import Sequence

from .chat import IGNORE_INDEX, encode_example, pad_batch


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(reference: str, output: str) -> float:
    """ROUGE-L F1 in [0, 1]; an empty output scores 0."""
    if not output.strip() or not reference.strip():
        return 0.0
    return float(_rouge_scorer().score(reference, output)["rougeL"].fmeasure)


def mean_interval(values: Sequence[float], z: float = 1.96) -> dict:
    """Mean with a normal-approximation 95% interval (CLT over items), in the shape of `evaluation.rate`
    (`successes` is empty: this is a mean, not a count)."""
    n = len(values)
    if n == 0:
        return {"value": float("nan"), "successes": "", "n": 0, "ci_low": float("nan"), "ci_high": float("nan")}
    mean = statistics.fmean(values)
    half = z * statistics.stdev(values) / math.sqrt(n) if n > 1 else float("nan")
    return {"value": mean, "successes": "", "n": n, "ci_low": mean - half, "ci_high": mean + half}


def rouge_l_metric(references: Sequence[str], outputs: Sequence[str]) -> dict:
    if len(references) != len(outputs):
        raise ValueError("references and outputs must have the same length")
    return mean_interval([rouge_l(r, o) for r, o in zip(references, outputs)])


def reference_logprobs(model, tokenizer, prompts: Sequence[str], references: Sequence[str], *, batch_size: int,
                       max_length: int = 512) -> list[float]:
    """Per item: mean log-probability per token of `references[i]` after `prompts[i]`, teacher-forced."""
    import torch

    examples = [encode_example(tokenizer, p, r, max_length) for p, r in zip(prompts, references)]
    device = next(model.parameters()).device
    scores: list[float] = [math.nan] * len(examples)
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        ids, mask = pad_batch([examples[i]["input_ids"] for i in batch], tokenizer.pad_token_id, side="right")
        labels, _ = pad_batch([examples[i]["labels"] for i in batch], IGNORE_INDEX, side="right")
        ids, mask, labels = (torch.tensor(x, device=device) for x in (ids, mask, labels))
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        per_item = (logp * keep).sum(-1) / keep.sum(-1)
        for row, index in enumerate(batch):
            scores[index] = float(per_item[row])
    return scores


def over_refusal(outputs: Sequence[str], matcher: str = "official") -> list[bool]:
    """Per benign request: whether the model refused it (the official refusal matcher by default)."""
    from .evaluation import is_refusal

    return [is_refusal(o, matcher) for o in outputs]
