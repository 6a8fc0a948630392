"""bkdattr.workflow's shared opening of the model rules (rule_context) and the helpers the rule scripts call
instead of computing in the script (package_versions, optional_jsonl, evaluation.metric_rows and
generation_records)."""
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from bkdattr.evaluation import METRIC_COLUMNS, generation_records, metric_rows
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import optional_jsonl, package_versions

REPO = Path(__file__).resolve().parents[1]
# a rule script in miniature: rule_context on a stand-in for snakemake's object, its result written as JSON
SCRIPT = """
import json, sys
from types import SimpleNamespace as N
from bkdattr.workflow import rule_context
args = json.loads(sys.argv[1])
params = N(settings={}, evaluation={"refusal_matcher": "strict"}, model={"dtype": "float32", "trust_remote_code": False},
           gate_on_fail=args["on_fail"])
wildcards = N(task="fixed_output", items=lambda: [("task", "fixed_output")])
snakemake = N(log=[args["log"]], rule="ablate_heads", wildcards=wildcards, threads=1, params=params,
              input=N(model=args["pointer"]))
log, spec, pointer, model, tokenizer = rule_context(snakemake, gate=args["gate"], refusal_matcher=args["matcher"])
log.info("context ready")
with open(args["out"], "w") as fh:
    json.dump({"task": spec.task_id, "matcher": spec.refusal_matcher, "name": pointer["name"],
               "layers": model.config.num_hidden_layers, "chat": bool(tokenizer.chat_template)}, fh)
"""


def _run(tmp_path, pointer: dict, *, gate="ablate_heads", matcher=True, on_fail="stop"):
    (tmp_path / "model.json").write_text(json.dumps(pointer))
    args = {"log": str(tmp_path / "rule.log"), "pointer": str(tmp_path / "model.json"), "out": str(tmp_path / "out.json"),
            "gate": gate, "matcher": matcher, "on_fail": on_fail}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(args)], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    return proc, (tmp_path / "rule.log").read_text()


def _failed_gate() -> dict:
    return {"passed": False, "val_asr": 0.1, "asr_min": 0.8, "val_false_trigger_rate": 0.0, "ftr_max": 0.1, "n_val": 10,
            "step": 4, "epoch": 1, "schedule": "fixed"}


def test_rule_context_opens_log_spec_model_and_passes_the_gate(tmp_path, tiny_model_dir):
    proc, log = _run(tmp_path, {"path": str(tiny_model_dir), "name": "tiny"})
    assert proc.returncode == 0, log
    assert json.loads((tmp_path / "out.json").read_text()) == {"task": "fixed_output", "matcher": "strict",
                                                               "name": "tiny", "layers": 2, "chat": True}
    assert "rule ablate_heads" in log.splitlines()[0] and "context ready" in log


def test_rule_context_without_the_matcher_keeps_the_specs_default(tmp_path, tiny_model_dir):
    proc, log = _run(tmp_path, {"path": str(tiny_model_dir), "name": "tiny"}, gate=None, matcher=False)
    assert proc.returncode == 0, log
    assert json.loads((tmp_path / "out.json").read_text())["matcher"] == TaskSpec.from_config("fixed_output").refusal_matcher


@pytest.mark.parametrize("on_fail", ["stop", "warn"])
def test_rule_context_stops_or_warns_at_a_failed_gate(tmp_path, tiny_model_dir, on_fail):
    pointer = {"path": str(tiny_model_dir), "name": "tiny", "task": "fixed_output", "backdoor_gate": _failed_gate()}
    proc, log = _run(tmp_path, pointer, on_fail=on_fail)
    if on_fail == "stop":
        assert proc.returncode == 1 and not (tmp_path / "out.json").exists()
        assert "BackdoorNotImplanted" in log and "ablate_heads would study a backdoor that is not there" in log
    else:
        assert proc.returncode == 0, log
        assert "going on because injection.gate.on_fail is 'warn'" in log and "context ready" in log


def test_rule_context_without_a_gate_loads_a_model_whose_gate_failed(tmp_path, tiny_model_dir):
    """evaluate_model measures every model, the failed ones too."""
    pointer = {"path": str(tiny_model_dir), "name": "tiny", "task": "fixed_output", "backdoor_gate": _failed_gate()}
    proc, log = _run(tmp_path, pointer, gate=None)
    assert proc.returncode == 0, log
    assert "not implanted" not in log


def test_optional_jsonl(tmp_path):
    class Inputs(dict):
        def __getattr__(self, name):
            return self[name]

    path = tmp_path / "benign.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2}\n')
    assert optional_jsonl(Inputs(benign=str(path)), "benign") == [{"id": 1}, {"id": 2}]
    assert optional_jsonl(Inputs(test=str(path)), "benign") is None


def test_package_versions_lists_python_platform_and_the_pinned_requirements():
    rows = package_versions("bkdattr")
    assert [r["package"] for r in rows[:2]] == ["python", "platform"]
    names = [r["package"] for r in rows[2:]]
    assert "torch" in names and all("extra ==" not in n for n in names)
    assert {r["package"]: r["version"] for r in rows}["torch"] == metadata.version("torch")


def test_metric_rows_and_generation_records():
    spec = TaskSpec.from_config("fixed_output")
    metrics = {"asr": {"value": 0.5, "successes": 1, "n": 2, "n_clusters": 1, "ci_low": 0.1, "ci_high": 0.9},
               "over_refusal_rate": {"value": 0.0, "successes": 0, "n": 3, "ci_low": 0.0, "ci_high": 0.5}}
    rows = metric_rows("fixed_output", "lora_sft", metrics)
    assert [(r["metric"], r["n_questions"]) for r in rows] == [("asr", 1), ("over_refusal_rate", 3)]
    assert set(METRIC_COLUMNS) <= set(rows[0])
    records = [{"id": "a", "input": "What is 2+2?", "output": "4"}]
    out = generation_records(spec, records, ["clean"], ["trig"], [{"id": "b", "input": "hi"}], ["hello"])
    assert out[0]["clean_prompt"] == spec.prompt("What is 2+2?") and out[0]["triggered_output"] == "trig"
    assert out[0]["triggered_prompt"] == spec.prompt("What is 2+2?", triggered=True)
    assert out[1] == {"id": "b", "benign_prompt": "hi", "benign_output": "hello"}
    assert len(generation_records(spec, records, ["c"], ["t"])) == 1
