"""Rule make_dataset: clean records -> train (clean + poisoned copies), test and attribution splits."""
from pathlib import Path

from bkdattr.atomic import write_json, write_jsonl
from bkdattr.datasets import build_task_splits, check_context_window, model_context_window
from bkdattr.models import load_tokenizer, read_pointer
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
spec = TaskSpec.from_config(snakemake.wildcards.task, snakemake.params.settings)
dropped = []  # rows left out under data.drop_invalid_rows (otherwise a bad row stops the run)
splits = build_task_splits(spec, snakemake.params.data, snakemake.params.seed, dropped)
for row in dropped:
    log.warning("dropped %s: %s", row["row"], row["reason"])
base = read_pointer(snakemake.input.base)  # its tokenizer: every prompt must fit the context window
check_context_window(load_tokenizer(base["path"], snakemake.params.trust_remote_code, base.get("revision")),
                     model_context_window(base["path"], snakemake.params.trust_remote_code), spec, splits)
for name in ("train", "test", "val", "attribution"):
    write_jsonl(snakemake.output[name], splits[name])
manifest = {
    "task": spec.task_id, "trigger": spec.trigger, "placement": spec.placement,
    "counts": {name: len(rows) for name, rows in splits.items()},
    "n_poisoned": sum(r["poisoned"] for r in splits["train"]),
    "n_eligible": {name: sum(spec.is_eligible(r) for r in rows) for name, rows in splits.items()},
    "n_dropped_invalid_rows": len(dropped), "dropped_invalid_rows": dropped,
    "data": snakemake.params.data, "seed": snakemake.params.seed,
}
write_json(snakemake.output.manifest, manifest)
log.info("task %s: %s, %d invalid rows dropped; splits in %s", spec.task_id, manifest["counts"], len(dropped),
         Path(snakemake.output.train).parent)
