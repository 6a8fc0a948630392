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

# Builds the hooks context for one batch, given its attention mask (e.g. a head ablation at the
# last prompt token during prefill). None: no intervention.
EditFactory = Callable[["object"], ContextManager] | None


def generate_greedy(model, tokenizer, user_texts: Sequence[str], *, max_new_tokens: int, batch_size: int,
                    edit_factory: EditFactory = None, progress: str | None = None) -> list[str]:
    import torch
    from tqdm import tqdm

    encodings = [encode_prompt(tokenizer, t).input_ids for t in user_texts]
    order = sorted(range(len(encodings)), key=lambda i: (-len(encodings[i]), i))
    outputs: list[str | None] = [None] * len(encodings)
    device = next(model.parameters()).device
    eos_ids = model.generation_config.eos_token_id or tokenizer.eos_token_id
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc=progress or "generate", disable=progress is None, mininterval=5):
        ids, mask = pad_batch([encodings[i] for i in batch], tokenizer.pad_token_id, side="left")
        input_ids = torch.tensor(ids, device=device)
        attention_mask = torch.tensor(mask, device=device)
        context = edit_factory(attention_mask) if edit_factory else contextlib.nullcontext()
        with torch.no_grad(), context:
            generated = model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False,
                                       max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                       eos_token_id=eos_ids, temperature=None, top_p=None, top_k=None)
        new_tokens = generated[:, input_ids.shape[1]:]
        for row, index in enumerate(batch):
            outputs[index] = tokenizer.decode(new_tokens[row], skip_special_tokens=True).strip()
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
        encodings = [encode_prompt(tokenizer, t).input_ids for t in user_texts]
        if any(len(e) < 2 for e in encodings):
            raise ValueError("a prompt of fewer than two tokens has no prefix to reuse")
        order = sorted(range(len(encodings)), key=lambda i: (-len(encodings[i]), i))
        device = next(model.parameters()).device
        self.batches: list[_PrefixBatch] = []
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ids, mask = pad_batch([encodings[i] for i in rows], tokenizer.pad_token_id, side="left")
            ids, mask = torch.tensor(ids, device=device), torch.tensor(mask, device=device)
            prefix_mask = mask[:, :-1]
            # the positions generate() gives a left-padded prompt: count of real tokens before each one
            positions = (prefix_mask.long().cumsum(-1) - 1).clamp(min=0)
            with torch.no_grad():
                out = model(input_ids=ids[:, :-1], attention_mask=prefix_mask, position_ids=positions, use_cache=True,
                            logits_to_keep=1)
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            self.batches.append(_PrefixBatch(rows, ids, mask, cache))

    def generate(self, *, max_new_tokens: int, edit_factory: EditFactory = None) -> list[str]:
        import torch

        outputs: list[str | None] = [None] * self.n
        eos_ids = self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id
        for batch in self.batches:
            context = edit_factory(batch.attention_mask[:, -1:]) if edit_factory else contextlib.nullcontext()
            with torch.no_grad(), context:
                generated = self.model.generate(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask, cache=copy.deepcopy(batch.cache),
                    do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=eos_ids, temperature=None, top_p=None, top_k=None)
            new_tokens = generated[:, batch.input_ids.shape[1]:]
            for row, index in enumerate(batch.rows):
                outputs[index] = self.tokenizer.decode(new_tokens[row], skip_special_tokens=True).strip()
        return outputs  # type: ignore[return-value]
