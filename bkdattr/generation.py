"""Batched greedy generation with dynamic left padding and a KV cache.

Prompts are sorted by length so a batch pads only to its own longest prompt, not to a fixed 256, and a row
leaves its batch as soon as it is done (`_compact_greedy`; `model.generate` is kept as the reference decoder).

`SharedPrefix`: the prompts of a set share their first tokens (the chat template's system turn and the
opening of the user turn, a task instruction: 24-47 of SmolLM2's ~43-72 prompt tokens), so those are run
once per set, not once per prompt. A batch then starts from their KV cache and runs only the rest of each
prompt, left-padded after the shared part ([shared][pad][rest]; positions from the mask, as before).
benchmarks/bench_shared_prefix.py measures it (identical outputs, and the time saved).

`PromptPrefixes` serves the interventions that edit only the last prompt token (head ablation at that
token in prefill, the backdoor vector): every position before it is the same under every such edit, so
the KV cache of the prompt minus its last token is computed once per prompt set and each setting's
generation starts from a copy of it (the trick exact ACIE uses). Edits then see a prefill call of one
position: the last prompt token.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from dataclasses import dataclass
from typing import Callable, ContextManager, Sequence

import torch
from tqdm import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

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
    """A per-row StoppingCriteria for `model.generate`: a row is done once `stop_when` holds for its
    continuation so far (the reference decoder only)."""
    if stop_when is None:
        return None

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


def shared_prefix_length(sequences: Sequence[Sequence[int]], keep: int = 1) -> int:
    """How many first tokens every sequence has in common, leaving at least `keep` tokens of each after them."""
    if not sequences:
        return 0
    limit = min(len(s) for s in sequences) - keep
    first = sequences[0]
    n = 0
    while n < limit and all(s[n] == first[n] for s in sequences):
        n += 1
    return max(n, 0)


def _keep_last_logits(model) -> dict:
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def _cache_of(out):
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


def prefill(model, input_ids, attention_mask, cache=None, *, use_cache: bool = True):
    """One forward over the columns of `input_ids` that `cache` (a KV cache of the first columns, or None) does
    not hold, positions counted from `attention_mask` (any padding), logits of the last column only. Every
    prompt pass of generation, the intervention prefixes and the activation cache goes through here."""
    start = 0 if cache is None else cache.get_seq_length()
    kwargs = {"cache": cache} if cache is not None else {}
    return model(input_ids=input_ids[:, start:], attention_mask=attention_mask,
                 position_ids=position_ids_from_mask(attention_mask)[:, start:], use_cache=use_cache or cache is not None,
                 **kwargs, **_keep_last_logits(model))


@dataclass
class SharedPrefix:
    """The first tokens all prompts of a set have in common, run once: their KV cache for one row."""

    ids: list[int]
    cache: object

    @classmethod
    def of(cls, model, sequences: Sequence[Sequence[int]], *, keep: int = 1, at_most: int | None = None,
           edit_factory: EditFactory = None):
        """The shared prefix of `sequences` (leaving `keep` tokens of each, at most `at_most` tokens), or None
        when they share nothing. `edit_factory`: an edit the same at every position, run on the prefix too."""
        n = shared_prefix_length(sequences, keep)
        if at_most is not None:
            n = min(n, at_most)
        if n < 1:
            return None
        ids = list(sequences[0][:n])
        device = next(model.parameters()).device
        input_ids = torch.tensor([ids], device=device)
        context = edit_factory(torch.ones_like(input_ids)) if edit_factory else contextlib.nullcontext()
        with torch.no_grad(), context:
            out = model(input_ids=input_ids, use_cache=True, **_keep_last_logits(model))
        return cls(ids, _cache_of(out))

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, rests: Sequence[Sequence[int]], pad_id: int, side: str, device):
        """(input_ids, attention_mask, cache) of a batch whose rows are this prefix + each of `rests`, padded
        after the prefix; the cache (a copy, one row per sequence) covers the prefix columns."""
        ids, mask = pad_batch(rests, pad_id, side=side)
        rows = len(rests)
        input_ids = torch.cat([torch.tensor([self.ids] * rows, device=device), torch.tensor(ids, device=device)], 1)
        attention_mask = torch.cat([torch.ones(rows, len(self.ids), dtype=torch.long, device=device),
                                    torch.tensor(mask, device=device)], 1)
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(rows)
        return input_ids, attention_mask, cache


def _prompt_batches(model, tokenizer, user_texts: Sequence[str], batch_size: int, *, share_prefix: bool = False,
                    keep: int = 1, edit_factory: EditFactory = None):
    """[(rows, input_ids, attention_mask, cache)]: prompts sorted longest first, left-padded per batch. With
    `share_prefix`, the tokens all prompts share are run once (under `edit_factory`, an edit the same at every
    position, if given): each batch is [shared][pad][rest] and `cache` (else None) holds the shared columns;
    `keep` tokens of every prompt stay outside the shared part."""
    encodings = [encode_prompt(tokenizer, t).input_ids for t in user_texts]
    order = sorted(range(len(encodings)), key=lambda i: (-len(encodings[i]), i))
    device = next(model.parameters()).device
    shared = SharedPrefix.of(model, encodings, keep=keep, edit_factory=edit_factory) if share_prefix else None
    batches = []
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        if shared is None:
            ids, mask = pad_batch([encodings[i] for i in rows], tokenizer.pad_token_id, side="left")
            batches.append((rows, torch.tensor(ids, device=device), torch.tensor(mask, device=device), None))
        else:
            ids, mask, cache = shared.batch([encodings[i][len(shared):] for i in rows], tokenizer.pad_token_id,
                                            "left", device)
            batches.append((rows, ids, mask, cache))
    return batches


def _eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id or tokenizer.eos_token_id
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


# Which decoder `_generate_batch` uses: "compact" (ours, below) or "hf" (`model.generate`, the reference the
# tests and benchmarks/bench_decoder.py compare it with).
DECODERS = ("compact", "hf")


def _generate_batch(model, tokenizer, input_ids, attention_mask, *, max_new_tokens: int, context, cache=None,
                    stop_when: StopWhen = None, decoder: str = "compact") -> list[str]:
    """Greedy continuations of one left-padded batch, decoded (`cache`: a KV cache of a prefix of input_ids).
    A row ends at EOS, at `stop_when` or after max_new_tokens."""
    if decoder == "compact":
        return _compact_greedy(model, tokenizer, input_ids, attention_mask, max_new_tokens=max_new_tokens,
                               context=context, cache=cache, stop_when=stop_when)
    if decoder != "hf":
        raise ValueError(f"unknown decoder {decoder!r}; expected one of {', '.join(DECODERS)}")
    kwargs = {} if cache is None else {"cache": cache}
    criteria = _stopping_criteria(tokenizer, input_ids.shape[1], stop_when)
    if criteria is not None:
        kwargs["stopping_criteria"] = criteria
    with torch.no_grad(), context:
        generated = model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False,
                                   max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                   eos_token_id=_eos_ids(model, tokenizer), temperature=None, top_p=None, top_k=None,
                                   **kwargs)
    return [_decode(tokenizer, row) for row in generated[:, input_ids.shape[1]:]]


def _compact_greedy(model, tokenizer, input_ids, attention_mask, *, max_new_tokens: int, context, cache=None,
                    stop_when: StopWhen = None) -> list[str]:
    """Greedy decoding that drops a row from the batch as soon as it is done (EOS or `stop_when`).

    `model.generate` keeps every row in the batch, padding finished ones, until the last row ends, so one long
    answer makes a whole batch of short ones pay for its length. Here a finished row leaves the batch and its
    KV cache (`Cache.batch_select_indices`). The model calls are those of `generate` (same inputs, position
    ids, masks and logits_to_keep=1), so the tokens are the same; benchmarks/bench_decoder.py measures
    both decoders on the workflow's prompt sets (identical outputs, and the time saved)."""
    eos = torch.tensor(_eos_ids(model, tokenizer), device=input_ids.device)
    keep_logits = _keep_last_logits(model)
    live = list(range(input_ids.shape[0]))  # batch row -> original row
    tokens: list[list[int]] = [[] for _ in live]
    mask = attention_mask
    with torch.no_grad(), context:
        out = prefill(model, input_ids, mask, cache)
        last_position = position_ids_from_mask(mask)[:, -1:]
        for step in range(max_new_tokens):
            cache = _cache_of(out)
            next_tokens = out.logits[:, -1].float().argmax(-1)
            done = torch.isin(next_tokens, eos).tolist()
            for i, (row, token) in enumerate(zip(live, next_tokens.tolist())):
                tokens[row].append(token)
                if not done[i] and stop_when is not None and stop_when(_decode(tokenizer, tokens[row])):
                    done[i] = True
            if step == max_new_tokens - 1 or all(done):
                break
            if any(done):
                keep = [i for i, d in enumerate(done) if not d]
                index = torch.tensor(keep, device=input_ids.device)
                cache.batch_select_indices(index)
                live = [live[i] for i in keep]
                next_tokens, mask, last_position = next_tokens[index], mask[index], last_position[index]
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            last_position = last_position + 1
            out = model(input_ids=next_tokens[:, None], attention_mask=mask, position_ids=last_position, cache=cache,
                        use_cache=True, **keep_logits)
    return [_decode(tokenizer, row_tokens) for row_tokens in tokens]


def generate_greedy(model, tokenizer, user_texts: Sequence[str], *, max_new_tokens: int, batch_size: int,
                    edit_factory: EditFactory = None, progress: str | None = None, stop_when: StopWhen = None,
                    decoder: str = "compact", share_prefix: bool = True) -> list[str]:
    """Greedy continuations of the chat prompts of `user_texts`, in their order. The tokens all prompts share are
    run once (`share_prefix`) without an edit, or under an edit the same at every position (a factory marked
    `same_at_every_position`); any other edit may depend on the batch, so it sees whole prompts."""
    outputs: list[str | None] = [None] * len(user_texts)
    everywhere = getattr(edit_factory, "same_at_every_position", False)
    batches = _prompt_batches(model, tokenizer, user_texts, batch_size,
                              share_prefix=share_prefix and (edit_factory is None or everywhere),
                              edit_factory=edit_factory if everywhere else None)
    for rows, input_ids, attention_mask, cache in tqdm(batches, desc=progress or "generate", disable=progress is None,
                                                       mininterval=5):
        context = edit_factory(attention_mask) if edit_factory else contextlib.nullcontext()
        texts = _generate_batch(model, tokenizer, input_ids, attention_mask, max_new_tokens=max_new_tokens,
                                context=context, cache=cache, stop_when=stop_when, decoder=decoder)
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

    def __init__(self, model, tokenizer, user_texts: Sequence[str], *, batch_size: int, share_prefix: bool = True):
        self.model, self.tokenizer, self.n = model, tokenizer, len(user_texts)
        self.batches: list[_PrefixBatch] = []
        # the shared part (run once, `share_prefix`) leaves each prompt's last two tokens: one for this prefix
        for rows, ids, mask, cache in _prompt_batches(model, tokenizer, user_texts, batch_size,
                                                      share_prefix=share_prefix, keep=2):
            if int(mask.sum(1).min()) < 2:
                raise ValueError("a prompt of fewer than two tokens has no prefix to reuse")
            with torch.no_grad():
                cache = _cache_of(prefill(model, ids[:, :-1], mask[:, :-1], cache))
            self.batches.append(_PrefixBatch(rows, ids, mask, cache))

    def generate(self, *, max_new_tokens: int, edit_factory: EditFactory = None, stop_when: StopWhen = None,
                 decoder: str = "compact") -> list[str]:
        outputs: list[str | None] = [None] * self.n
        for batch in self.batches:
            context = edit_factory(batch.attention_mask[:, -1:]) if edit_factory else contextlib.nullcontext()
            texts = _generate_batch(self.model, self.tokenizer, batch.input_ids, batch.attention_mask,
                                    max_new_tokens=max_new_tokens, context=context, cache=copy.deepcopy(batch.cache),
                                    stop_when=stop_when, decoder=decoder)
            for index, text in zip(batch.rows, texts):
                outputs[index] = text
        return outputs  # type: ignore[return-value]
