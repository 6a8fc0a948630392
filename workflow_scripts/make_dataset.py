"""Rule make_dataset: clean records -> train (clean + poisoned copies, + benign rows for the jailbreak task),
test, val, attribution and confirmation splits."""
from pathlib import Path

from bkdattr.atomic import write_json, write_jsonl
from bkdattr.datasets import build_task_splits, split_manifest
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import check_against_base_model, optional_jsonl, start_rule

params, out = snakemake.params, snakemake.output
log = start_rule(snakemake)
# the refusal matcher only checks rows and changes no output: read from the config, so its change reruns no data
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, snakemake.config["evaluation"]["refusal_matcher"])
dropped = []  # rows left out under data.drop_invalid_rows (otherwise a bad row stops the run)
splits = build_task_splits(spec, params.data, params.seed, dropped,
                           benign_train=optional_jsonl(snakemake.input, "benign_train") or ())
for row in dropped:
    log.warning("dropped %s: %s", row["row"], row["reason"])
check_against_base_model(snakemake.input.base, params.trust_remote_code, spec, splits)  # its tokens, its context
for name in ("train", "test", "val", "attribution", "confirm"):
    write_jsonl(out[name], splits[name])
manifest = split_manifest(spec, splits, dropped, params.data, params.seed)
write_json(out.manifest, manifest)
log.info("task %s: %s, %d invalid rows dropped; splits in %s", spec.task_id, manifest["counts"], len(dropped),
         Path(out.train).parent)
