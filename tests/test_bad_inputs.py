"""Bad models, caches, activations and intervention settings fail fast with the culprit named.

The whole catalogue (config, data, models, caches) is in tests/BAD_INPUTS.md; the config and data
entries are tested in test_config.py and test_datasets.py.
"""

import json

import pytest
import torch

from bkdattr.caching import check_finite, load_cache
from bkdattr.hooks import HeadEdit, ResidualEdit, trace
from bkdattr.interventions import resolve_k, steering_layers
from bkdattr.models import ModelError, load_model, load_tokenizer


def test_model_path_that_does_not_exist(tmp_path):
    with pytest.raises(ModelError, match="no such directory"):
        load_model(str(tmp_path / "missing-model"))


def test_directory_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelError, match="cannot read a model config"):
        load_model(str(tmp_path))


def test_checkpoint_that_is_not_a_causal_lm(tmp_path):
    from transformers import T5Config

    T5Config(d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2, vocab_size=32).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="not a causal language model"):
        load_model(str(tmp_path))


def test_tokenizer_without_chat_template(tmp_path, tiny_tokenizer):
    tiny_tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ModelError, match="has no chat template"):
        load_tokenizer(str(tmp_path))


def _write_cache(tmp_path, model="m", task="jailbreak", rows=4, value=0.0):
    from bkdattr.atomic import write_json, write_safetensors

    tensors = {"resid_probe": torch.full((rows, 2, 3), value), "labels": torch.zeros(rows, dtype=torch.int64)}
    write_safetensors(tmp_path / "a.safetensors", tensors)
    write_json(tmp_path / "a.json", {"model": model, "task": task, "n_rows": rows})
    return tmp_path / "a.safetensors", tmp_path / "a.json"


def test_cache_whose_sidecar_names_another_model(tmp_path):
    tensors, sidecar = _write_cache(tmp_path, model="other-model")
    with pytest.raises(ValueError, match="cache was made for model 'other-model', not 'm'"):
        load_cache(tensors, sidecar, model_name="m", task="jailbreak")


def test_cache_whose_sidecar_names_another_task(tmp_path):
    tensors, sidecar = _write_cache(tmp_path, task="fixed_output")
    with pytest.raises(ValueError, match="task 'fixed_output', not 'jailbreak'"):
        load_cache(tensors, sidecar, model_name="m", task="jailbreak")


def test_cache_with_wrong_row_count(tmp_path):
    tensors, sidecar = _write_cache(tmp_path)
    sidecar.write_text(json.dumps({"model": "m", "task": "jailbreak", "n_rows": 5}))
    with pytest.raises(ValueError, match="has 4 rows, the sidecar says 5"):
        load_cache(tensors, sidecar, model_name="m", task="jailbreak")


def test_nan_in_cached_activations(tmp_path):
    tensors, sidecar = _write_cache(tmp_path, value=float("nan"))
    with pytest.raises(ValueError, match=r"non-finite values \(NaN/inf\) in resid_probe at row 0"):
        load_cache(tensors, sidecar, model_name="m", task="jailbreak")


def test_inf_in_fresh_activations_names_the_row():
    x = torch.zeros(3, 2)
    x[2, 1] = float("inf")
    with pytest.raises(ValueError, match="at row 2"):
        check_finite(x, "heads", "pool.jsonl")


def test_k_larger_than_the_number_of_heads():
    with pytest.raises(ValueError, match="k=1000 exceeds the model's 270 heads"):
        resolve_k([1, 1000], 270)


def test_steering_layer_out_of_range():
    with pytest.raises(ValueError, match=r"interventions.steering.layers: \[30\] out of range .* 0..29"):
        steering_layers({"layers": [0, 30]}, 30)


def test_edit_layer_and_head_out_of_range(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="layer 7 out of range"):
        with trace(model, residual_edits=[ResidualEdit(layer=7, vector=torch.zeros(64))]):
            pass
    with pytest.raises(ValueError, match="bad heads"):
        with trace(model, head_edits=[HeadEdit(layer=0, heads=[9], mode="zero")]):
            pass
    with pytest.raises(ValueError, match="last dim 5 != d_model 64"):
        with trace(model, residual_edits=[ResidualEdit(layer=0, vector=torch.zeros(5))]):
            pass
