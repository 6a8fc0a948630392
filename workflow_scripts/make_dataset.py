"""Rule make_dataset: clean records -> train (clean + poisoned copies, + benign rows for the jailbreak task),
test, val, attribution and confirmation splits."""
from pathlib import Path

from bkdattr.atomic import write_json, write_jsonl
from bkdattr.datasets import (build_task_splits, check_context_window, check_special_tokens, model_context_window,
                               split_manifest)
from bkdattr.models import load_tokenizer, read_pointer
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import read_jsonl, start_rule

params = snakemake.params
log = start_rule(snakemake)
# the configured refusal matcher only checks rows (a jailbreak backdoor output must not be a refusal by it) and
# changes no output, so it is read from the config, not a param: a matcher change reruns no data (inject_backdoor,
# which reruns then, checks the rows again)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, snakemake.config["evaluation"]["refusal_matcher"])
dropped = []  # rows left out under data.drop_invalid_rows (otherwise a bad row stops the run)
benign_train = read_jsonl(snakemake.input.benign_train) if "benign_train" in snakemake.input.keys() else ()
splits = build_task_splits(spec, params.data, params.seed, dropped, benign_train=benign_train)
for row in dropped:
    log.warning("dropped %s: %s", row["row"], row["reason"])
base = read_pointer(snakemake.input.base)  # its tokenizer: every prompt must fit the context window
tokenizer = load_tokenizer(base["path"], params.trust_remote_code, base.get("revision"))
check_special_tokens(tokenizer, spec, splits)  # the model's own special tokens, in task strings and rows
check_context_window(tokenizer, model_context_window(base["path"], params.trust_remote_code), spec, splits)
for name in ("train", "test", "val", "attribution", "confirm"):
    write_jsonl(snakemake.output[name], splits[name])
manifest = split_manifest(spec, splits, dropped, params.data, params.seed)
write_json(snakemake.output.manifest, manifest)
log.info("task %s: %s, %d invalid rows dropped; splits in %s", spec.task_id, manifest["counts"], len(dropped),
         Path(snakemake.output.train).parent)
