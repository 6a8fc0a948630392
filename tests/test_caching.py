"""Caches: batching and padding never change what is read, and positions are the named ones."""

import torch

from bkdattr.caching import cache_activations
from bkdattr.chat import encode_prompt
from bkdattr.hooks import head_outputs

TEXTS = ["hi", "What is the capital of France? Answer briefly.", "Classify the following news article: team wins"]


def test_batched_left_padded_cache_equals_one_prompt_at_a_time(tiny):
    model, tok = tiny
    batched = cache_activations(model, tok, TEXTS, batch_size=3)
    for i, text in enumerate(TEXTS):
        single = cache_activations(model, tok, [text], batch_size=1)
        for name in batched:
            assert torch.allclose(batched[name][i], single[name][0], atol=1e-5), name


def test_fixed_256_padding_reads_the_same_values(tiny):
    model, tok = tiny
    dynamic = cache_activations(model, tok, TEXTS, batch_size=2)
    fixed = cache_activations(model, tok, TEXTS, batch_size=2, padding="fixed", fixed_length=256)
    for name in dynamic:
        assert torch.allclose(dynamic[name], fixed[name], atol=1e-5)


def test_heads_are_read_at_the_last_prompt_token_and_resid_at_the_last_user_token(tiny):
    model, tok = tiny
    enc = encode_prompt(tok, TEXTS[1])
    ids = torch.tensor([enc.input_ids])
    cache = cache_activations(model, tok, [TEXTS[1]], batch_size=1, position="last_user_token")
    heads = head_outputs(model, ids, torch.ones_like(ids))  # default: last real token
    assert torch.allclose(cache["heads_prompt_last"][0, 1], heads[1][0], atol=1e-6)
    from bkdattr.hooks import trace

    with torch.no_grad(), trace(model, read_resid=[0], positions=torch.tensor([enc.last_user_token])) as t:
        model(input_ids=ids)
    assert torch.allclose(cache["resid_probe"][0, 0], t.resid[0][0], atol=1e-6)
    assert enc.last_user_token < enc.last_prompt_token


def test_default_probe_reads_position_minus_one_of_the_turn_rendered_without_generation_prompt(tiny):
    # the official train_classifier.py: apply_chat_template([user], add_generation_prompt=False)[-1]
    from bkdattr.hooks import trace

    model, tok = tiny
    for text in TEXTS:
        turn_ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=False,
                                           tokenize=True, return_dict=False)
        turn_ids = torch.tensor([list(turn_ids)])
        with torch.no_grad(), trace(model, read_resid=[0, 1], positions=torch.tensor([turn_ids.shape[1] - 1])) as t:
            model(input_ids=turn_ids)
        cache = cache_activations(model, tok, [text], batch_size=1)  # default position
        for layer in (0, 1):
            assert torch.allclose(cache["resid_probe"][0, layer], t.resid[layer][0], atol=1e-5)
        enc = encode_prompt(tok, text)
        assert enc.input_ids[: enc.template_end_token + 1] == turn_ids[0].tolist()
        assert enc.last_user_token < enc.template_end_token < enc.last_prompt_token


def test_shapes(tiny):
    model, tok = tiny
    cache = cache_activations(model, tok, TEXTS, batch_size=2)
    assert cache["resid_probe"].shape == (3, 2, 64)
    assert cache["heads_prompt_last"].shape == (3, 2, 4, 64)
