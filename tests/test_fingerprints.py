"""Content, not modification time: data files and activation caches whose bytes change with their mtime kept,
and model files that would load only in part (tests/BAD_INPUTS.md, the last two sections)."""
import json
import os
import shutil

import pytest
import torch
import yaml

from bkdattr.models import ModelError, build_tiny_model, load_model, load_tokenizer
from bkdattr.provenance import ProvenanceError
from workflow_utils import TINY_CONFIG, planned_jobs, snakemake


# ---------------------------------------------------------------- stale results: data files
def _replace_keeping_mtime(path, text):
    """New contents, old modification time (as `touch -r` or `cp -p` leave a file)."""
    stat = os.stat(path)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_data_file_replaced_with_its_mtime_kept_reruns_that_tasks_data(tmp_path):
    from bkdattr.synthetic import GENERATORS, generate_benign

    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["tasks"] = {"fixed_output": {}, "jailbreak": {}}
    config["data"]["source"] = "files"
    config["data"]["files"] = {}
    for task in config["tasks"]:
        rows = GENERATORS[task](150, 1)
        if task == "jailbreak":
            rows = [{k: v for k, v in r.items() if k != "question"} for r in rows]
        (tmp_path / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        config["data"]["files"][task] = str(tmp_path / f"{task}.jsonl")
    benign = tmp_path / "benign.jsonl"
    benign.write_text("".join(json.dumps(r) + "\n" for r in generate_benign(60, 1)))
    config["data"]["benign_file"] = str(benign)
    configfile = tmp_path / "files.yaml"
    configfile.write_text(yaml.safe_dump(config))
    targets = [f"results/data/{t}/manifest.json" for t in config["tasks"]]

    def planned():
        return planned_jobs(snakemake(tmp_path, "-n", *targets, configfile=configfile).stdout)

    snakemake(tmp_path, *targets, configfile=configfile)
    assert planned() == {}
    path = config["data"]["files"]["fixed_output"]
    text = open(path, encoding="utf-8").read()
    _replace_keeping_mtime(path, text)  # the same contents written again: nothing to do
    assert planned() == {}
    lines = text.splitlines()
    _replace_keeping_mtime(path, "\n".join(lines[1:] + lines[:1]) + "\n")  # other order, same mtime
    assert planned() == {"make_dataset": 1}
    _replace_keeping_mtime(path, text)
    assert planned() == {}
    benign_text = benign.read_text()
    _replace_keeping_mtime(benign, "".join(benign_text.splitlines(keepends=True)[1:]))  # a row fewer, same mtime
    jobs = planned()
    assert jobs.get("make_benign_requests") == 1 and jobs.get("make_dataset") == 1  # the jailbreak mix, not fixed_output
    manifest = json.loads((tmp_path / "results/data/fixed_output/manifest.json").read_text())
    assert len(manifest["data"]["content_sha256"]["fixed_output"]) == 64  # the manifest says which contents


def test_a_data_file_re_pointed_at_an_older_file_reruns_its_task(tmp_path):
    """A symlink moved to another, older file, the link's own mtime kept (`touch -h -r`, `rsync -a`): every
    mtime Snakemake can see is older than the outputs."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["tasks"] = {"fixed_output": {}}
    config["data"].update(source="files", files={"fixed_output": str(tmp_path / "data.jsonl")}, benign_mix=0)
    from bkdattr.synthetic import GENERATORS

    rows = GENERATORS["fixed_output"](150, 1)
    (tmp_path / "old.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[::-1]))
    (tmp_path / "new.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.utime(tmp_path / "old.jsonl", (1_000_000_000, 1_000_000_000))
    (tmp_path / "data.jsonl").symlink_to(tmp_path / "new.jsonl")
    configfile = tmp_path / "files.yaml"
    configfile.write_text(yaml.safe_dump(config))
    target = "results/data/fixed_output/manifest.json"
    snakemake(tmp_path, target, configfile=configfile)
    link = os.lstat(tmp_path / "data.jsonl")
    (tmp_path / "data.jsonl").unlink()
    (tmp_path / "data.jsonl").symlink_to(tmp_path / "old.jsonl")
    os.utime(tmp_path / "data.jsonl", ns=(link.st_atime_ns, link.st_mtime_ns), follow_symlinks=False)
    assert planned_jobs(snakemake(tmp_path, "-n", target, configfile=configfile).stdout) == {"make_dataset": 1}


def test_a_local_hf_dataset_directory_rewritten_with_its_mtimes_kept_reruns_its_task(tmp_path):
    """data.source hf with a local dataset directory (datasets.load_dataset reads it offline): no file of it is a
    tracked input, so only its contents, as a param, can rerun the task."""
    from bkdattr.synthetic import GENERATORS

    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["tasks"] = {"fixed_output": {}}
    local = tmp_path / "my-dataset"
    local.mkdir()
    text = "".join(json.dumps(r) + "\n" for r in GENERATORS["fixed_output"](150, 1))
    (local / "train.jsonl").write_text(text)
    config["data"].update(source="hf", hf={"fixed_output": {"name": str(local)}}, benign_mix=0)
    configfile = tmp_path / "hf.yaml"
    configfile.write_text(yaml.safe_dump(config))
    target = "results/data/fixed_output/manifest.json"
    env = {"HF_HOME": str(tmp_path / "hf-home"), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    snakemake(tmp_path, target, configfile=configfile, env=env)
    assert planned_jobs(snakemake(tmp_path, "-n", target, configfile=configfile, env=env).stdout) == {}
    lines = text.splitlines()
    _replace_keeping_mtime(local / "train.jsonl", "\n".join(lines[1:] + lines[:1]) + "\n")
    assert planned_jobs(snakemake(tmp_path, "-n", target, configfile=configfile, env=env).stdout) == {"make_dataset": 1}


def test_a_home_relative_benign_file_is_the_file_tracked(tmp_path):
    from bkdattr.synthetic import generate_benign

    (tmp_path / "benign.jsonl").write_text("".join(json.dumps(r) + "\n" for r in generate_benign(60, 1)))
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["data"]["benign_file"] = "~/benign.jsonl"
    configfile = tmp_path / "benign.yaml"
    configfile.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "-n", "results/data/benign/manifest.json", configfile=configfile,
                     env={"HOME": str(tmp_path)})
    assert planned_jobs(proc.stdout)["make_benign_requests"] == 1


@pytest.mark.parametrize("key, value", [("files", {"jailbreak": "data/{task}.jsonl"}),
                                        ("benign_file", "data/benign-{x}.jsonl")])
def test_a_data_path_with_braces_is_refused_naming_the_key(key, value):
    from bkdattr.config import ConfigError, check_config

    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["tasks"] = {"jailbreak": {}}
    config["data"][key] = value
    if key == "files":
        config["data"]["source"] = "files"
    name = "data.files.jailbreak" if key == "files" else "data.benign_file"
    with pytest.raises(ConfigError, match=rf"{name} is .*a path with '{{' or '}}' is not supported.*name the file literally"):
        check_config(config, "c.yaml")


# ---------------------------------------------------------------- stale results: activation caches
def _pool_cache(tiny, tmp_path):
    from bkdattr.atomic import write_json, write_safetensors
    from bkdattr.caching import cache_pool
    from bkdattr.synthetic import GENERATORS
    from bkdattr.tasks import TaskSpec

    model, tokenizer = tiny
    spec = TaskSpec.from_config("fixed_output", {})
    records = GENERATORS["fixed_output"](4, 0)
    tensors, sidecar = cache_pool(model, tokenizer, spec, records, batch_size=4, position="template_end",
                                  model_name="m", model_path="p", origin="pool.jsonl")
    write_safetensors(tmp_path / "activations.safetensors", tensors, {"model": "m", "task": spec.task_id})
    write_json(tmp_path / "activations.json", sidecar)
    return tmp_path / "activations.safetensors", tmp_path / "activations.json"


def test_a_cache_with_changed_bytes_and_its_mtime_kept_is_refused(tiny, tmp_path):
    from bkdattr.caching import load_cache

    tensors, sidecar = _pool_cache(tiny, tmp_path)
    assert load_cache(tensors, sidecar, model_name="m", task="fixed_output")["labels"].tolist()[:2] == [0, 1]
    stat = os.stat(tensors)
    with open(tensors, "r+b") as fh:  # one float of the last tensor's values, the header untouched
        fh.seek(stat.st_size - 8)
        fh.write(b"\x00\x00\x80\x3f")
    os.utime(tensors, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ProvenanceError, match=r"activations.safetensors: its tensors differ from those recorded in "
                                              r".*activations.json.*--forcerun cache_activations"):
        load_cache(tensors, sidecar, model_name="m", task="fixed_output")


def test_a_truncated_cache_is_refused_naming_the_file(tiny, tmp_path):
    from bkdattr.caching import load_cache

    tensors, sidecar = _pool_cache(tiny, tmp_path)
    data = tensors.read_bytes()
    tensors.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProvenanceError, match=r"activations.safetensors: not a readable safetensors file, truncated "
                                              r"or corrupted.*--forcerun cache_activations"):
        load_cache(tensors, sidecar, model_name="m", task="fixed_output")


def test_a_cache_sidecar_without_a_fingerprint_is_read_with_a_warning(tiny, tmp_path, caplog):
    from bkdattr.caching import load_cache

    tensors, sidecar = _pool_cache(tiny, tmp_path)
    recorded = json.loads(sidecar.read_text())
    assert len(recorded.pop("tensors_sha256")) == 64
    sidecar.write_text(json.dumps(recorded))
    load_cache(tensors, sidecar, model_name="m", task="fixed_output")
    assert "records no tensors_sha256" in caplog.text and "--forcerun cache_activations" in caplog.text


# ---------------------------------------------------------------- model files that load half
@pytest.fixture
def checkpoint(tiny_model_dir, tmp_path):
    path = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, path)
    return path


def _rewrite_weights(path, edit):
    from safetensors.torch import load_file, save_file

    weights = load_file(path / "model.safetensors")
    save_file(edit(weights), str(path / "model.safetensors"), metadata={"format": "pt"})


def test_the_tiny_checkpoint_loads_with_its_lm_head_tied_to_the_embeddings(tiny_model_dir):
    from safetensors import safe_open

    with safe_open(str(tiny_model_dir / "model.safetensors"), "pt") as fh:
        assert "lm_head.weight" not in fh.keys()  # transformers ties it: not a missing weight
    model, _ = load_model(str(tiny_model_dir), device="cpu")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_a_checkpoint_missing_a_layers_weights_is_refused_naming_the_keys(checkpoint):
    _rewrite_weights(checkpoint, lambda w: {k: v for k, v in w.items() if "layers.1.mlp" not in k})
    with pytest.raises(ModelError, match=rf"{checkpoint}: the checkpoint loaded only in part: 3 weight\(s\) missing "
                                         r"\(first: model.layers.1.mlp.down_proj.weight.*point model.path at a complete"):
        load_model(str(checkpoint), device="cpu")


def test_a_checkpoint_with_unexpected_or_misshapen_weights_is_refused(checkpoint):
    original = (checkpoint / "model.safetensors").read_bytes()
    _rewrite_weights(checkpoint, lambda w: {**w, "model.layers.5.extra.weight": torch.zeros(2)})
    with pytest.raises(ModelError, match=r"1 weight\(s\) unexpected \(first: model.layers.5.extra.weight\)"):
        load_model(str(checkpoint), device="cpu")
    (checkpoint / "model.safetensors").write_bytes(original)
    _rewrite_weights(checkpoint, lambda w: {**w, "model.norm.weight": torch.zeros(3)})
    with pytest.raises(ModelError, match=rf"{checkpoint}: the checkpoint has weights of another shape"):
        load_model(str(checkpoint), device="cpu")


@pytest.mark.parametrize("damage", ["truncated", "header byte"])
def test_an_unreadable_safetensors_checkpoint_is_named(checkpoint, damage):
    path = checkpoint / "model.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[10] ^= 0xFF  # inside the JSON header
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=rf"{path}: not a readable safetensors file, truncated or corrupted.*"
                                         r"write it again"):
        load_model(str(checkpoint), device="cpu")


def test_a_tokenizer_without_pad_or_eos_token_is_refused_naming_the_model(tmp_path):
    from bkdattr.models import CHATML_TEMPLATE
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=rf"{tmp_path}: the tokenizer has neither a pad token nor an eos token.*"
                                         r"set `eos_token`"):
        load_tokenizer(str(tmp_path))


def test_a_model_whose_tokenizer_has_no_pad_or_eos_token_is_refused_where_it_is_prepared(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from bkdattr.models import CHATML_TEMPLATE

    build_tiny_model(tmp_path / "m", seed=0)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    tokenizer.chat_template = CHATML_TEMPLATE
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / "m" / name).unlink(missing_ok=True)
    tokenizer.save_pretrained(tmp_path / "m")
    with pytest.raises(ModelError, match="neither a pad token nor an eos token"):
        load_model(str(tmp_path / "m"), device="cpu")


def test_every_cache_of_the_workflow_records_its_tensors_fingerprint(tiny_run):
    from safetensors.torch import load_file

    from bkdattr.caching import tensors_sha256

    sidecars = sorted(tiny_run.glob("results/cache/*/*/activations.json"))
    assert sidecars
    for sidecar in sidecars:
        recorded = json.loads(sidecar.read_text())["tensors_sha256"]
        assert recorded == tensors_sha256(load_file(sidecar.with_suffix(".safetensors")))
