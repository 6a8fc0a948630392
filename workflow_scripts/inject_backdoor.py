"""Rule inject_backdoor: fine-tune the base model on the poisoned split (or, for the clean-SFT control, on its
clean rows alone with the same recipe) with TRL; score the backdoor gate on the
validation split; save the merged checkpoint, the loss curve and the gate curve."""

from bkdattr.atomic import write_tsv
from bkdattr.datasets import check_backdoor_outputs
from bkdattr.models import read_pointer, write_pointer
from bkdattr.provenance import directory_fingerprint
from bkdattr.tasks import TaskSpec
from bkdattr.training import GATE_CURVE_COLUMNS, LOSS_LOG_COLUMNS, inject, save_checkpoint
from bkdattr.workflow import load_rule_model, read_jsonl, start_rule

params, out, control_of = snakemake.params, snakemake.output, snakemake.params.get("clean_control_of")
log = start_rule(snakemake, uses_torch=True, seed=params.seed)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, params.evaluation["refusal_matcher"])
train, validation = read_jsonl(snakemake.input.train), read_jsonl(snakemake.input.val)
check_backdoor_outputs(spec, {"train": train, "val": validation})  # by this run's refusal matcher, before training
base, model, tokenizer = load_rule_model(snakemake.input.base, params.model)  # checks the base's fingerprint
result = inject(model, tokenizer, spec, train, method=control_of or params.method,
                injection_cfg=params.injection, seed=params.seed, validation=validation,
                eval_batch_size=params.evaluation["batch_size"], threads=snakemake.threads,
                benign_validation=read_jsonl(snakemake.input.benign_val) if "benign_val" in snakemake.input.keys() else None,
                # the control replays the backdoored run's schedule up to the step it stopped at
                clean_control=read_pointer(snakemake.input.backdoored)["backdoor_gate"] if control_of else None)
name = snakemake.wildcards.method  # the method (a further seed's: "<method>-seed<s>"), or CLEAN_CONTROL
save_checkpoint(result.model, tokenizer, out.checkpoint)
write_tsv(out.train_log, result.loss_log, LOSS_LOG_COLUMNS)
write_tsv(out.gate_curve, result.gate_curve, GATE_CURVE_COLUMNS)
verdict = {"backdoor_gate": result.gate_verdict} if result.gate_verdict else {}
write_pointer(out.pointer, out.checkpoint, f"{base['name']}+{name}", base=base["path"], task=spec.task_id, method=name,
              made_by=snakemake.rule, injection_seed=params.seed, fingerprint=directory_fingerprint(out.checkpoint),
              **verdict)
log.info("final loss %s; checkpoint at %s; gate %s", result.loss_log[-1]["loss"] if result.loss_log else "n/a (edit)",
         out.checkpoint, result.gate_verdict or "n/a (clean control)")
