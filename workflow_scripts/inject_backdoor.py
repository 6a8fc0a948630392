"""Rules inject_backdoor and inject_clean_control: fine-tune the base model on the poisoned split (or, for
the control, on its clean rows alone with the same recipe); save the merged checkpoint."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # bkdattr, also outside a pip install

from bkdattr.atomic import write_tsv
from bkdattr.models import load_model, read_pointer, write_pointer
from bkdattr.tasks import TaskSpec
from bkdattr.training import build_examples, save_checkpoint, train_backdoor
from bkdattr.workflow import read_jsonl, start_rule

params = snakemake.params
log = start_rule(snakemake, uses_torch=True, seed=params.seed)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings)
base = read_pointer(snakemake.input.base)
model, tokenizer = load_model(base["path"], params.model["dtype"], params.model["trust_remote_code"])
records = read_jsonl(snakemake.input.train)
control_of = params.get("clean_control_of")
method = control_of or snakemake.wildcards.method
name = "clean_sft" if control_of else method
if control_of:
    records = [r for r in records if not r["poisoned"]]
examples = build_examples(tokenizer, spec, records, params.injection["max_length"])
log.info("training %s (%s) on %d examples (%d poisoned)", name, method, len(examples),
         sum(r["poisoned"] for r in records))
model, loss_log = train_backdoor(model, tokenizer, examples, method=method,
                                 injection_cfg=params.injection, seed=params.seed, threads=snakemake.threads)
save_checkpoint(model, tokenizer, snakemake.output.checkpoint)
write_tsv(snakemake.output.train_log, loss_log, ["step", "loss", "lr", "elapsed_s"])
write_pointer(snakemake.output.pointer, snakemake.output.checkpoint, f"{base['name']}+{name}",
              base=base["path"], task=spec.task_id, method=name)
log.info("final loss %.4f; checkpoint at %s", loss_log[-1]["loss"], snakemake.output.checkpoint)
