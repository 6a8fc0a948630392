"""The injection package's seams: the method registry (a new method touches bkdattr/injection/ and the schema's
enum only), the gate's verdict read back through one function, gate.py free of torch, and the TRL-private
override DPO relies on, pinned."""
import copy
import inspect
import json
import subprocess
import sys

import pytest

from bkdattr.gate import GateVerdict, read_verdict
from bkdattr.injection import REGISTRY, Job, Method, TrainingResult, control_method, inject, method_names, register
from bkdattr.tasks import TaskSpec

SPEC = TaskSpec.from_config("fixed_output")
ROWS = [{"id": f"q{i}", "input": f"What is {i} plus {i}?", "output": f"{i} plus {i} is {2 * i}.", "poisoned": False}
        for i in range(4)]
GATE_CFG = {"schedule": "adaptive", "gate": {"asr_min": 0.9, "ftr_max": 0.1, "check_every_steps": 2,
                                             "max_new_tokens": 3}}


def test_gate_and_the_injection_registry_import_without_torch():
    """The plots env has no torch: the gate's verdict, its reader and the registry (the rules import it when the
    DAG is built) must load without it."""
    code = ("import sys\n"
            "for name in ('torch', 'transformers', 'peft', 'trl', 'datasets'):\n"
            "    sys.modules[name] = None  # import torch now raises ImportError\n"
            "from bkdattr.gate import BackdoorGate, GateVerdict, enforce_gate, read_verdict\n"
            "from bkdattr.injection import control_method, inject, method_names\n"
            "assert control_method('dpo') == 'lora_sft' and 'edit' in method_names()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_schema_enum_lists_exactly_the_registered_methods():
    from bkdattr.config import schema_node

    assert schema_node("injection", "methods")["items"]["enum"] == list(method_names())


def test_the_clean_control_trains_by_the_first_method_when_it_is_sft_else_by_lora_sft():
    assert [control_method(m) for m in ("lora_sft", "full_sft", "dpo", "edit")] == ["lora_sft", "full_sft",
                                                                                   "lora_sft", "lora_sft"]
    with pytest.raises(ValueError, match="unknown injection method 'nope'"):
        control_method("nope")


def _copy_base(model, tokenizer, spec, records, job: Job) -> TrainingResult:
    """A throwaway method: the base model, unchanged, scored by the gate like any method."""
    copied = copy.deepcopy(model)
    job.gate.score(copied, tokenizer, step=0, epoch=0.0)
    return TrainingResult(copied, [], list(job.gate.curve), job.gate.verdict())


def test_a_fifth_method_needs_only_a_registry_entry_and_the_schema_enum(tiny, tiny_config, monkeypatch):
    from bkdattr import config as config_module

    model, tok = tiny
    monkeypatch.setitem(REGISTRY, "copy_base", None)  # removed again after the test
    register(Method("copy_base", _copy_base))
    result = inject(model, tok, SPEC, ROWS, method="copy_base", injection_cfg=GATE_CFG, seed=0, validation=ROWS,
                    eval_batch_size=4)
    assert result.model is not model and result.loss_log == [] and len(result.gate_curve) == 1
    assert result.gate_verdict.passed is False and result.gate_verdict.n_val == len(ROWS)  # no backdoor in the base
    assert control_method("copy_base") == "lora_sft"
    # the config accepts it once the schema's enum names it, and not before
    raw = {k: v for k, v in tiny_config.items()}
    raw["injection"] = {**tiny_config["injection"], "methods": ["copy_base"]}
    with pytest.raises(config_module.ConfigError, match="injection.methods.0"):
        config_module.check_config(copy.deepcopy(raw))
    schema = config_module._schema()
    schema["properties"]["injection"]["properties"]["methods"]["items"]["enum"].append("copy_base")
    monkeypatch.setattr(config_module, "_schema", lambda: schema)
    assert config_module.check_config(copy.deepcopy(raw))["injection"]["methods"] == ["copy_base"]


def test_the_verdict_round_trips_through_model_json_and_a_bad_one_is_named(tmp_path):
    from bkdattr.models import write_pointer

    verdict = GateVerdict(passed=True, val_asr=1.0, val_false_trigger_rate=0.0, n_val=4, step=6, epoch=1.5,
                          asr_min=0.9, ftr_max=0.1, schedule="adaptive", n_val_questions=4, max_steps=12)
    path = tmp_path / "model.json"
    write_pointer(path, "ckpt", "m+lora_sft", backdoor_gate=verdict.to_json())
    assert read_verdict(path) == verdict and read_verdict(json.loads(path.read_text())) == verdict
    write_pointer(path, "ckpt", "m")
    assert read_verdict(path) is None  # a model without a gate
    record = verdict.to_json()
    del record["val_asr"]
    write_pointer(path, "ckpt", "m", backdoor_gate=record)
    with pytest.raises(ValueError, match=rf"{path}: the backdoor gate's verdict lacks val_asr"):
        read_verdict(path)


def test_dpo_overrides_a_trl_private_method_pinned_to_the_trl_it_was_checked_against():
    """PretokenizedDPOTrainer replaces DPOTrainer._prepare_dataset (TRL offers no public way to hand it
    pre-tokenized pairs; bkdattr/injection/dpo.py says why). A TRL upgrade must fail here, not train silently
    on other token ids: recheck the override against the new DPOTrainer, then move the pin."""
    import trl
    from trl import DPOTrainer

    from bkdattr.injection.dpo import TRL_PINNED, pretokenized_dpo_trainer

    assert trl.__version__ == TRL_PINNED, f"TRL {trl.__version__}: recheck DPOTrainer._prepare_dataset's override"
    assert list(inspect.signature(DPOTrainer._prepare_dataset).parameters) == [
        "self", "dataset", "processing_class", "args", "dataset_name"]
    # its __init__ prepares the training split through it (the override's only job)
    assert 'self._prepare_dataset(train_dataset, processing_class, args, "train")' in inspect.getsource(DPOTrainer.__init__)
    assert "_prepare_dataset" in vars(pretokenized_dpo_trainer())
