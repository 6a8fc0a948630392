"""Chat-template prompts, the positions the method names, and response-only loss masks.

One definition of each position, used by every stage:
  template_end_token -- last token of the rendered user turn with its template closing tokens and no
                        generation prompt: position -1 of apply_chat_template([user],
                        add_generation_prompt=False), the official train_classifier.py's probe position
                        (our default probe representation)
  last_user_token    -- last token of the user's own text (a probe-position variant)
  last_prompt_token  -- last token of the full prompt, generation prompt included (attribution, steering)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

IGNORE_INDEX = -100


@dataclass(frozen=True)
class PromptEncoding:
    input_ids: list[int]
    last_user_token: int  # index into input_ids
    template_end_token: int  # index into input_ids

    @property
    def last_prompt_token(self) -> int:
        return len(self.input_ids) - 1


def encode_prompt(tokenizer, user_text: str) -> PromptEncoding:
    """Render one user turn with the chat template (generation prompt included) and tokenize it."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": user_text}],
                                             add_generation_prompt=True, tokenize=False)
    end = rendered.rfind(user_text)
    if end < 0:
        raise ValueError("the chat template altered the user text; cannot locate the user turn")
    end += len(user_text)
    turn = tokenizer.apply_chat_template([{"role": "user", "content": user_text}],
                                         add_generation_prompt=False, tokenize=False)
    if not rendered.startswith(turn):
        raise ValueError("the chat template renders the user turn differently with and without the generation "
                         "prompt; cannot locate the end of the user turn")
    enc = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    starts = [start for start, _stop in enc["offset_mapping"]]
    # the last token whose span starts before the end of the user's text / of the rendered turn. Causal
    # attention makes the residual there equal to position -1 of the turn rendered on its own.
    last_user = max(i for i, start in enumerate(starts) if start < end)
    template_end = max(i for i, start in enumerate(starts) if start < len(turn))
    return PromptEncoding(list(enc["input_ids"]), last_user, template_end)


def user_char_token(tokenizer, user_text: str, char: int) -> int:
    """Index, in the encoded prompt of `user_text` (encode_prompt), of the token holding character `char` of the
    user's own text (e.g. the last character of a trigger)."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": user_text}],
                                             add_generation_prompt=True, tokenize=False)
    at = rendered.rfind(user_text) + char
    enc = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    return max(i for i, (start, _stop) in enumerate(enc["offset_mapping"]) if start <= at)


PROBE_POSITIONS = ("template_end", "last_user_token")


def probe_position(encoding: PromptEncoding, position: str) -> int:
    """Index of the probe representation in `encoding.input_ids` (config probes.position)."""
    if position == "template_end":
        return encoding.template_end_token
    if position == "last_user_token":
        return encoding.last_user_token
    raise ValueError(f"probes.position: unknown position {position!r}; expected one of {', '.join(PROBE_POSITIONS)}")


def encode_example(tokenizer, user_text: str, response: str, max_length: int) -> dict[str, list[int]]:
    """input_ids and labels for SFT: prompt tokens get IGNORE_INDEX, the response and its end-of-turn count."""
    prompt_ids = encode_prompt(tokenizer, user_text).input_ids
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        raise ValueError(f"max_length={max_length} cuts off the whole response of an example with a "
                         f"{len(prompt_ids)}-token prompt; raise injection.max_length")
    return {"input_ids": input_ids, "labels": labels}


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int, side: str) -> tuple[list[list[int]], list[list[int]]]:
    """Pad to the longest sequence of this batch only (dynamic padding); returns (ids, attention_mask)."""
    width = max(len(s) for s in sequences)
    ids, mask = [], []
    for s in sequences:
        pad = [pad_id] * (width - len(s))
        ones, zeros = [1] * len(s), [0] * (width - len(s))
        ids.append(pad + list(s) if side == "left" else list(s) + pad)
        mask.append(zeros + ones if side == "left" else ones + zeros)
    return ids, mask
