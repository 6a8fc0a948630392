"""Batched greedy generation with dynamic left padding and a KV cache.

Prompts are sorted by length so a batch pads only to its own longest prompt, not to a fixed 256.

`PromptPrefixes` serves the interventions that edit only the last prompt token (head ablation at that
token in prefill, the backdoor vector): every position before it is the same under every such edit, so
the KV cache of the prompt minus its last token is computed once per prompt set and each setting's
generation starts from a copy of it (the trick exact ACIE uses). Edits then see a prefill call of one
position: the last prompt token.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, ContextManager, Sequence

from .chat import encode_prompt, pad_batch
from .hooks import position_ids_from_mask

# Builds the hooks context for one batch, given its attention mask (e.g. a head ablation at the
# last prompt token during prefill). None: no intervention.
EditFactory = Callable[["object"], ContextManager] | None
# Early stop: a row stops generating once this holds for its decoded text so far. Only for predicates
# that stay true whatever follows (a keyword or target that has appeared), so every verdict read from the
# shorter output equals the verdict of the full one. None: every row runs to max_new_tokens or EOS.
StopWhen = Callable[[str], bool] | None


def _decode(tokenizer, tokens) -> str:
    return tokenizer.decode(tokens, skip_special_tokens=True).strip()


def _stopping_criteria(tokenizer, prompt_length: int, stop_when: StopWhen):
    """A per-row StoppingCriteria: a row is done once `stop_when` holds for its continuation so far."""
    if stop_when is None:
        return None
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class VerdictFinal(StoppingCriteria):
        done = None

        def __call__(self, input_ids, scores, **kwargs):
            if self.done is None:
                self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            for row in (~self.done).nonzero().flatten().tolist():
                if stop_when(_decode(tokenizer, input_ids[row, prompt_length:])):
                    self.done[row] = True
            return self.done.clone()

    return StoppingCriteriaList([VerdictFinal()])


def _prompt_batches(model, tokenizer, user_texts: Sequence[str], batch_size: int):
    """[(rows, input_ids, attention_mask)]: prompts sorted longest first, left-padded per batch."""
    import torch

    encodings = [encode_prompt(tokenizer, t).input_ids for t in user_texts]
    order = sorted(range(len(encodings)), key=lambda i: (-len(encodings[i]), i))
    device = next(model.parameters()).device
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        ids, mask = pad_batch([encodings[i] for i in rows], tokenizer.pad_token_id, side="left")
        batches.append((rows, torch.tensor(ids, device=device), torch.tensor(mask, device=device)))
    return batches


def _generate_batch(model, tokenizer, input_ids, attention_mask, *, max_new_tokens: int, context, cache=None,
                    stop_when: StopWhen = None) -> list[str]:
    """Greedy continuations of one left-padded batch, decoded (`cache`: a KV cache of a prefix of input_ids).
    The batch ends when every row has hit EOS or `stop_when`; a stopped row is padded, the others go on."""
    import torch

    kwargs = {} if cache is None else {"cache": cache}
    criteria = _stopping_criteria(tokenizer, input_ids.shape[1], stop_when)
    if criteria is not None:
        kwargs["stopping_criteria"] = criteria
    with torch.no_grad(), context:
        generated = model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False,
                                   max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                   eos_token_id=model.generation_config.eos_token_id or tokenizer.eos_token_id,
                                   temperature=None, top_p=None, top_k=None, **kwargs)
    return [_decode(tokenizer, row) for row in generated[:, input_ids.shape[1]:]]


def generate_greedy(model, tokenizer, user_texts: Sequence[str], *, max_new_tokens: int, batch_size: int,
                    edit_factory: EditFactory = None, progress: str | None = None, stop_when: StopWhen = None) -> list[str]:
    from tqdm import tqdm

    outputs: list[str | None] = [None] * len(user_texts)
    batches = _prompt_batches(model, tokenizer, user_texts, batch_size)
    for rows, input_ids, attention_mask in tqdm(batches, desc=progress or "generate", disable=progress is None,
                                                mininterval=5):
        context = edit_factory(attention_mask) if edit_factory else contextlib.nullcontext()
        texts = _generate_batch(model, tokenizer, input_ids, attention_mask, max_new_tokens=max_new_tokens,
                                context=context, stop_when=stop_when)
        for index, text in zip(rows, texts):
            outputs[index] = text
    return outputs  # type: ignore[return-value]


@dataclass
class _PrefixBatch:
    rows: list[int]  # indices into the prompt list
    input_ids: object  # [b, s] left-padded whole prompts
    attention_mask: object
    cache: object  # KV cache of input_ids[:, :-1]


class PromptPrefixes:
    """A prompt set tokenised, batched and prefilled up to (not including) each prompt's last token, once.

    `generate(edit_factory)` gives the greedy outputs of `generate_greedy` for these prompts under an edit
    that touches only the last prompt token (or under no edit); the factory receives the one-column mask of
    that token, so `last_token_index` points at position 0 of the prefill call it edits."""

    def __init__(self, model, tokenizer, user_texts: Sequence[str], *, batch_size: int):
        import torch

        self.model, self.tokenizer, self.n = model, tokenizer, len(user_texts)
        self.batches: list[_PrefixBatch] = []
        for rows, ids, mask in _prompt_batches(model, tokenizer, user_texts, batch_size):
            if int(mask.sum(1).min()) < 2:
                raise ValueError("a prompt of fewer than two tokens has no prefix to reuse")
            prefix_mask = mask[:, :-1]
            with torch.no_grad():
                out = model(input_ids=ids[:, :-1], attention_mask=prefix_mask, position_ids=position_ids_from_mask(prefix_mask),
                            use_cache=True, logits_to_keep=1)
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            self.batches.append(_PrefixBatch(rows, ids, mask, cache))

    def generate(self, *, max_new_tokens: int, edit_factory: EditFactory = None, stop_when: StopWhen = None) -> list[str]:
        outputs: list[str | None] = [None] * self.n
        for batch in self.batches:
            context = edit_factory(batch.attention_mask[:, -1:]) if edit_factory else contextlib.nullcontext()
            texts = _generate_batch(self.model, self.tokenizer, batch.input_ids, batch.attention_mask,
                                    max_new_tokens=max_new_tokens, context=context, cache=copy.deepcopy(batch.cache),
                                    stop_when=stop_when)
            for index, text in zip(batch.rows, texts):
                outputs[index] = text
        return outputs  # type: ignore[return-value]
