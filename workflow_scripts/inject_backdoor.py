"""Rule inject_backdoor: fine-tune the base model on the poisoned split (the clean-SFT control: its clean rows, same
recipe); score the backdoor gate on the validation split; save the checkpoint, the loss curve and the gate curve."""

from bkdattr.datasets import check_backdoor_outputs
from bkdattr.gate import read_verdict
from bkdattr.injection import inject, save_result
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import load_rule_model, optional_jsonl, read_jsonl, start_rule

params, out, inp, control_of = snakemake.params, snakemake.output, snakemake.input, snakemake.params.get("clean_control_of")
log = start_rule(snakemake, uses_torch=True, seed=params.seed)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, params.evaluation["refusal_matcher"])
train, validation = read_jsonl(inp.train), read_jsonl(inp.val)
check_backdoor_outputs(spec, {"train": train, "val": validation})  # by this run's refusal matcher, before training
base, model, tokenizer = load_rule_model(inp.base, params.model)  # checks the base's fingerprint
result = inject(model, tokenizer, spec, train, method=control_of or params.method, injection_cfg=params.injection,
                seed=params.seed, validation=validation, eval_batch_size=params.evaluation["batch_size"],
                threads=snakemake.threads, benign_validation=optional_jsonl(inp, "benign_val"),
                # the control replays the backdoored run's schedule up to the step it stopped at
                clean_control=bool(control_of), backdoored=read_verdict(inp.backdoored) if control_of else None)
name = snakemake.wildcards.method  # the method (a further seed's: "<method>-seed<s>"), or CLEAN_CONTROL
save_result(result, tokenizer, **out, name=f"{base['name']}+{name}", base=base["path"], task=spec.task_id, method=name,
            made_by=snakemake.rule, injection_seed=params.seed)
log.info("final loss %s; checkpoint at %s; gate %s", (result.loss_log or [{"loss": "n/a (edit)"}])[-1]["loss"],
         out.checkpoint, result.gate_verdict or "n/a (clean control)")
