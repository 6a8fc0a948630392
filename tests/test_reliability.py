"""Interrupted runs resume to the same results; parameter changes rerun exactly what they affect."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from workflow_utils import REPO, TINY_CONFIG, planned_jobs, snakemake

# Tables that must be byte-identical between runs. Not compared, because they hold wall-clock times:
# results/benchmarks/*.tsv, the elapsed_s column of results/models/*/*/train_log.tsv, and the injection time and
# peak memory columns of results/tables/injection_methods.tsv (read from the benchmark files).
TIMED_TABLES = {"results/tables/injection_methods.tsv"}
TABLE_GLOBS = ["results/tables/*.tsv", "results/eval/*/*/metrics.tsv", "results/probes/*/*/*.tsv",
               "results/attribution/*/*/*.tsv", "results/interventions/*/*/*.tsv", "results/data/*/*.jsonl"]


def tables(workdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(workdir)): p.read_bytes() for g in TABLE_GLOBS for p in sorted(workdir.glob(g))
            if str(p.relative_to(workdir)) not in TIMED_TABLES}


def test_killed_run_resumes_to_byte_identical_tables(tiny_run, tmp_path):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(TINY_CONFIG), "--cores", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    logs = tmp_path / "results/logs/inject_backdoor"
    deadline = time.time() + 300
    while time.time() < deadline and not (logs.exists() and any(logs.rglob("*.log"))):
        time.sleep(0.5)
    time.sleep(3)  # well inside a training job
    os.killpg(proc.pid, signal.SIGKILL)  # a crash: no clean-up by snakemake or the job
    proc.wait()
    # whatever exists under its final name is complete: every model pointer has its checkpoint
    for pointer in tmp_path.glob("results/models/*/*/model.json"):
        assert (pointer.parent / "checkpoint" / "model.safetensors").is_file()
    assert not (tmp_path / "results/tables/table1.tsv").exists()
    snakemake(tmp_path, "--unlock")  # a killed snakemake leaves its lock behind, as after any crash
    snakemake(tmp_path, "--rerun-incomplete")
    first, second = tables(tiny_run), tables(tmp_path)
    assert len(first) > 40 and first.keys() == second.keys()
    different = [name for name in first if first[name] != second[name]]
    assert different == [], f"tables differ between an uninterrupted and a killed-then-resumed run: {different}"


def _changed(tmp_path, edit) -> Path:
    config = yaml.safe_load(TINY_CONFIG.read_text())
    edit(config)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # same key order: only the edit differs
    return path


def test_probe_setting_reruns_probes_and_their_reports_only(tiny_run, tmp_path):
    path = _changed(tmp_path, lambda c: c["probes"].update(epochs=6))
    jobs = planned_jobs(snakemake(tiny_run, "-n", configfile=path).stdout)
    # run_record holds the effective config: any setting reruns it (seconds)
    assert jobs == {"train_probes": 6, "probe_summary": 1, "fig2": 1, "claims_report": 1, "summary": 1, "run_record": 1, "all": 1}


def test_steering_setting_reruns_steering_and_its_reports_only(tiny_run, tmp_path):
    path = _changed(tmp_path, lambda c: c["interventions"]["steering"].update(scale=2.0))
    jobs = planned_jobs(snakemake(tiny_run, "-n", configfile=path).stdout)
    assert jobs == {"steer_backdoor_vector": 3, "table2_and_fig4": 1, "claims_report": 1, "summary": 1, "run_record": 1, "all": 1}


def test_one_tasks_trigger_reruns_that_task_only(tiny_run, tmp_path):
    path = _changed(tmp_path, lambda c: c["tasks"]["jailbreak"].update(placement="suffix"))
    jobs = planned_jobs(snakemake(tiny_run, "-n", configfile=path).stdout)
    assert jobs["make_dataset"] == 1 and jobs["inject_backdoor"] == 2  # lora_sft and clean_sft
    assert jobs["evaluate_model"] == 3  # base, lora_sft and clean_sft of that task
    # lora_sft in 3 modes + the exact ACIE control on base and clean_sft
    assert jobs["attribute_heads"] == 5 and jobs["ablate_heads"] == 1 and "prepare_base_model" not in jobs


def test_switching_the_clean_control_off_retrains_nothing(tiny_run, tmp_path):
    path = _changed(tmp_path, lambda c: c["injection"].update(clean_control=False))
    jobs = planned_jobs(snakemake(tiny_run, "-n", configfile=path).stdout)
    assert not {"inject_backdoor", "evaluate_model", "cache_activations"} & set(jobs)


def test_renaming_the_model_reruns_only_the_tables_and_figures_that_print_the_name(tiny_run, tmp_path):
    path = _changed(tmp_path, lambda c: c["model"].update(name="renamed-model"))
    jobs = planned_jobs(snakemake(tiny_run, "-n", configfile=path).stdout)
    assert not {"prepare_base_model", "inject_backdoor", "evaluate_model", "cache_activations", "attribute_heads"} & set(jobs)
    assert {"injection_table", "fig2", "fig3", "table1", "claims_report"} <= set(jobs)


def _workflow_with_schema_keys(tmp_path, new_keys: dict) -> Path:
    """A copy of the workflow whose schema has extra keys (section -> {key: schema}); no other file differs."""
    copy = tmp_path / "workflow"
    for name in ("Snakefile", "config.yaml", "rules", "workflow_scripts", "envs", "bkdattr"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    schema_file = copy / "bkdattr/schemas/config.schema.yaml"
    schema = yaml.safe_load(schema_file.read_text())
    for section, keys in new_keys.items():
        schema["properties"][section]["properties"].update(keys)
    schema_file.write_text(yaml.safe_dump(schema, sort_keys=False))
    return copy


def test_a_setting_added_to_the_schema_reruns_its_scope_with_no_other_file_edited(tiny_run, tmp_path):
    """Rerun scopes come from the schema's x-rerun annotations: a new attribution key (with its default) joins
    attribute_heads' params, so ACIE and everything downstream of it reruns, and nothing upstream; a new key
    scoped to no rule reruns only the run record (the effective config)."""
    def planned(new_keys, name):
        copy = _workflow_with_schema_keys(tmp_path / name, new_keys)
        # run from the copy: `python -m` imports from the working directory first, ahead of PYTHONPATH
        proc = snakemake(tiny_run, "-n", snakefile=copy / "Snakefile", env={"PYTHONPATH": str(copy)}, cwd=copy)
        return planned_jobs(proc.stdout)

    jobs = planned({"attribution": {"new_option": {"type": "integer", "default": 7}}}, "scoped")
    assert jobs == {"attribute_heads": 15, "attribute_refusal_heads": 1, "attribution_summary": 1, "fig3": 1, "ablate_heads": 3,
                    "steer_backdoor_vector": 3, "table1": 1, "table2_and_fig4": 1, "claims_report": 1, "summary": 1,
                    "run_record": 1, "all": 1}
    jobs = planned({"attribution": {"report_only": {"type": "integer", "default": 7, "x-rerun": []}}}, "unscoped")
    assert jobs == {"run_record": 1, "all": 1}


def test_choosing_another_ranking_reruns_the_interventions_only(tiny_run, tmp_path):
    path = _changed(tmp_path, lambda c: c["interventions"].update(ranking="atp"))
    jobs = planned_jobs(snakemake(tiny_run, "-n", configfile=path).stdout)
    assert jobs == {"ablate_heads": 3, "steer_backdoor_vector": 3, "table1": 1, "table2_and_fig4": 1, "claims_report": 1, "summary": 1,
                    "run_record": 1, "all": 1}


def test_an_edit_setting_retrains_no_other_method(tiny_run, tmp_path):
    path = _changed(tmp_path, lambda c: c["injection"].update(edit={"v_steps": 3}))
    jobs = planned_jobs(snakemake(tiny_run, "-n", configfile=path).stdout)
    assert jobs == {"run_record": 1, "all": 1}  # the tiny preset trains lora_sft and clean_sft only


def test_a_rule_log_starts_its_error_with_the_exceptions_message(tmp_path):
    """bkdattr.workflow.start_rule: the first error line of a failed rule's log is its own message (which names
    the file, row or key and the fix), ahead of the traceback that ends with it again."""
    import subprocess
    import sys

    log = tmp_path / "rule.log"
    script = ("from types import SimpleNamespace as N\n"
              "from bkdattr.workflow import start_rule\n"
              f"start_rule(N(log=[{str(log)!r}], rule='make_dataset', wildcards={{'task': 'fixed_output'}}, threads=1))\n"
              "raise ValueError('data/x.jsonl: line 2: missing field \\'output\\'; fix the row')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr == ""  # everything went to the log
    lines = log.read_text().splitlines()
    assert "INFO rule make_dataset" in lines[0]
    assert lines[1] == "ERROR in rule make_dataset: ValueError: data/x.jsonl: line 2: missing field 'output'; fix the row"
    assert lines[2] == "Traceback (most recent call last):" and lines[-1] == "ValueError: " + lines[1].split("ValueError: ")[1]
