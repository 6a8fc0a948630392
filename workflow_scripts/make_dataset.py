"""Rule make_dataset: clean records -> train (clean + poisoned copies, + benign rows for the jailbreak task),
test, val, attribution and confirmation splits."""
from pathlib import Path

from bkdattr.atomic import write_json, write_jsonl
from bkdattr.datasets import build_task_splits, check_context_window, model_context_window, split_manifest
from bkdattr.models import load_tokenizer, read_pointer
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import read_jsonl, start_rule

params = snakemake.params
log = start_rule(snakemake)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings)
dropped = []  # rows left out under data.drop_invalid_rows (otherwise a bad row stops the run)
benign_train = read_jsonl(snakemake.input.benign_train) if "benign_train" in snakemake.input.keys() else ()
splits = build_task_splits(spec, params.data, params.seed, dropped, benign_train=benign_train)
for row in dropped:
    log.warning("dropped %s: %s", row["row"], row["reason"])
base = read_pointer(snakemake.input.base)  # its tokenizer: every prompt must fit the context window
check_context_window(load_tokenizer(base["path"], params.trust_remote_code, base.get("revision")),
                     model_context_window(base["path"], params.trust_remote_code), spec, splits)
for name in ("train", "test", "val", "attribution", "confirm"):
    write_jsonl(snakemake.output[name], splits[name])
manifest = split_manifest(spec, splits, dropped, params.data, params.seed)
write_json(snakemake.output.manifest, manifest)
log.info("task %s: %s, %d invalid rows dropped; splits in %s", spec.task_id, manifest["counts"], len(dropped),
         Path(snakemake.output.train).parent)
