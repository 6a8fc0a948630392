"""Batched greedy generation with dynamic left padding and a KV cache.

Prompts are sorted by length so a batch pads only to its own longest prompt, not to a fixed 256.
"""

from __future__ import annotations

import contextlib
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
