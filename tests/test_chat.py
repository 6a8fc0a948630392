"""Chat formatting: the loss sees only the response, and the named positions are right."""

import pytest

from bkdattr.chat import IGNORE_INDEX, encode_example, encode_prompt, pad_batch, probe_position


def test_prompt_tokens_get_ignore_index_and_response_tokens_are_learned(tiny_tokenizer):
    tok = tiny_tokenizer
    example = encode_example(tok, "What is 7 plus 5?", "12.", max_length=512)
    prompt = encode_prompt(tok, "What is 7 plus 5?").input_ids
    n_prompt = len(prompt)
    assert example["input_ids"][:n_prompt] == prompt
    assert example["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    learned = example["labels"][n_prompt:]
    assert IGNORE_INDEX not in learned
    assert tok.decode(learned[:-1]) == "12."
    assert learned[-1] == tok.eos_token_id  # the end of turn is learned, so generation stops


def test_generation_prompt_is_part_of_the_prompt(tiny_tokenizer):
    ids = encode_prompt(tiny_tokenizer, "hello").input_ids
    assert tiny_tokenizer.decode(ids).endswith("<|im_start|>assistant\n")


def test_last_user_token_is_the_end_of_the_user_text(tiny_tokenizer):
    enc = encode_prompt(tiny_tokenizer, "hello there")
    assert tiny_tokenizer.decode(enc.input_ids[: enc.last_user_token + 1]).endswith("hello there")
    assert enc.last_user_token < enc.last_prompt_token == len(enc.input_ids) - 1


def test_template_end_token_is_the_last_token_of_the_closed_user_turn(tiny_tokenizer):
    enc = encode_prompt(tiny_tokenizer, "hello there")
    turn = tiny_tokenizer.apply_chat_template([{"role": "user", "content": "hello there"}],
                                              add_generation_prompt=False, tokenize=False)
    assert tiny_tokenizer.decode(enc.input_ids[: enc.template_end_token + 1]) == turn
    assert probe_position(enc, "template_end") == enc.template_end_token
    assert probe_position(enc, "last_user_token") == enc.last_user_token
    with pytest.raises(ValueError, match="probes.position: unknown position 'first'"):
        probe_position(enc, "first")


def test_truncation_that_drops_the_whole_response_is_an_error(tiny_tokenizer):
    with pytest.raises(ValueError, match="raise injection.max_length"):
        encode_example(tiny_tokenizer, "a long question " * 10, "answer", max_length=20)


def test_dynamic_padding_left_and_right():
    ids, mask = pad_batch([[1, 2, 3], [4]], pad_id=0, side="left")
    assert ids == [[1, 2, 3], [0, 0, 4]] and mask == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_batch([[1, 2, 3], [4]], pad_id=0, side="right")
    assert ids == [[1, 2, 3], [4, 0, 0]] and mask == [[1, 1, 1], [1, 0, 0]]
