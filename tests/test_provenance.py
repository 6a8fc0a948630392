"""Provenance: no stale or mixed result after an input outside the DAG changes (a test per case)."""
import json

import pytest
import yaml

from bkdattr.provenance import (ProvenanceError, directory_fingerprint, load_yaml_unique, verify_directory)
from workflow_utils import TINY_CONFIG, planned_jobs, snakemake


def test_a_changed_missing_or_added_checkpoint_file_is_named(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights-one")
    (tmp_path / "config.json").write_text("{}")
    fingerprint = directory_fingerprint(tmp_path)
    verify_directory(tmp_path, fingerprint, pointer="m.json", rule="prepare_base_model")  # unchanged: fine
    (tmp_path / "model.safetensors").write_bytes(b"weights-two")
    with pytest.raises(ProvenanceError, match=r"model.safetensors: changed since it was fingerprinted.*"
                                              r"--forcerun prepare_base_model"):
        verify_directory(tmp_path, fingerprint, pointer="m.json", rule="prepare_base_model")
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ProvenanceError, match="model.safetensors: missing"):
        verify_directory(tmp_path, fingerprint, pointer="m.json", rule="inject_backdoor")


def test_large_files_are_fingerprinted_by_size_and_sampled_contents(tmp_path):
    from bkdattr import provenance

    big = tmp_path / "model.safetensors"
    big.write_bytes(b"a" * (provenance.LARGE_FILE_BYTES + 10))
    fp = provenance.file_fingerprint(big)
    assert fp["sampled"] and fp["size"] == provenance.LARGE_FILE_BYTES + 10
    with open(big, "r+b") as fh:  # a change in the first MiB is seen
        fh.write(b"b")
    assert provenance.file_fingerprint(big) != fp


def test_a_key_written_twice_in_a_yaml_config_is_refused_naming_key_file_and_lines(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 0\ndata:\n  source: files\nmodel: {name: x}\ndata:\n  source: synthetic\n")
    with pytest.raises(ProvenanceError, match=r"c.yaml: line 5: key 'data' is written twice.*first at line 2"):
        load_yaml_unique(path)
    assert load_yaml_unique(TINY_CONFIG)["model"]["source"] == "tiny"


def test_the_workflow_refuses_a_config_with_a_duplicated_key(tmp_path):
    text = TINY_CONFIG.read_text() + "\ndata:\n  source: synthetic\n"
    configfile = tmp_path / "dup.yaml"
    configfile.write_text(text)
    proc = snakemake(tmp_path, "-n", configfile=configfile, check=False)
    assert proc.returncode != 0 and "key 'data' is written twice" in proc.stdout + proc.stderr


def test_a_key_written_twice_in_a_json_row_is_refused(tmp_path):
    from bkdattr.datasets import DataError, read_records

    path = tmp_path / "d.jsonl"
    path.write_text('{"input": "a", "output": "b"}\n{"input": "c", "output": "d", "output": "e"}\n')
    with pytest.raises(DataError, match=r"d.jsonl: line 2: key 'output' is written twice"):
        read_records(path)


def _files_config(tmp_path):
    from bkdattr.synthetic import GENERATORS

    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["data"]["source"] = "files"
    config["data"]["files"] = {}
    for task, generate in GENERATORS.items():
        path = tmp_path / f"{task}.jsonl"
        rows = generate(150, 1)
        if task == "jailbreak":
            rows = [{k: v for k, v in r.items() if k != "question"} for r in rows]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        config["data"]["files"][task] = str(path)
    configfile = tmp_path / "files.yaml"
    configfile.write_text(yaml.safe_dump(config))
    return config, configfile


def test_editing_a_data_file_reruns_that_tasks_data_and_nothing_of_the_others(tmp_path):
    config, configfile = _files_config(tmp_path)
    targets = [f"results/data/{t}/manifest.json" for t in config["data"]["files"]]
    snakemake(tmp_path, *targets, configfile=configfile)
    assert planned_jobs(snakemake(tmp_path, "-n", *targets, configfile=configfile).stdout) == {}
    path = config["data"]["files"]["jailbreak"]
    lines = open(path).read().splitlines()
    open(path, "w").write("\n".join(lines[1:] + lines[:1]) + "\n")  # same rows, another order: other splits
    assert planned_jobs(snakemake(tmp_path, "-n", *targets, configfile=configfile).stdout) == {"make_dataset": 1}


def test_swapped_local_weights_rerun_the_base_model_and_stop_a_job_that_would_mix_them(tmp_path):
    from bkdattr.models import build_tiny_model
    from bkdattr.workflow import load_rule_model

    model_dir = tmp_path / "my-model"
    build_tiny_model(model_dir, seed=0)
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["model"] = {"name": "my-model", "source": "hf", "path": str(model_dir), "dtype": "float32"}
    configfile = tmp_path / "hf.yaml"
    configfile.write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "results/models/base/model.json", configfile=configfile)
    pointer = json.loads((tmp_path / "results/models/base/model.json").read_text())
    assert "model.safetensors" in pointer["fingerprint"]
    build_tiny_model(model_dir, seed=1)  # other weights under the same path
    jobs = planned_jobs(snakemake(tmp_path, "-n", "results/models/base/model.json", configfile=configfile).stdout)
    assert jobs == {"prepare_base_model": 1}
    with pytest.raises(ProvenanceError, match=r"model.safetensors: changed since it was fingerprinted.*"
                                              r"--forcerun prepare_base_model"):
        load_rule_model(tmp_path / "results/models/base/model.json", {"dtype": "float32", "trust_remote_code": False})


def test_a_file_deleted_from_a_checkpoint_is_named_on_load(tmp_path):
    from bkdattr.models import build_tiny_model, load_model, model_provenance, write_pointer
    from bkdattr.workflow import load_rule_model

    ckpt = tmp_path / "checkpoint"
    build_tiny_model(ckpt, seed=0)
    model, _ = load_model(str(ckpt), device="cpu")
    write_pointer(tmp_path / "model.json", str(ckpt), "m", made_by="inject_backdoor", **model_provenance(str(ckpt), model))
    (ckpt / "tokenizer.json").unlink()
    with pytest.raises(ProvenanceError, match=r"tokenizer.json: missing.*--forcerun inject_backdoor"):
        load_rule_model(tmp_path / "model.json", {"dtype": "float32", "trust_remote_code": False})

