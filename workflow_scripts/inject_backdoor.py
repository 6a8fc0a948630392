"""Rules inject_backdoor and inject_clean_control: fine-tune the base model on the poisoned split (or, for
the control, on its clean rows alone with the same recipe) with TRL; score the backdoor gate on the
validation split; save the merged checkpoint, the loss curve and the gate curve."""

from bkdattr.atomic import write_tsv
from bkdattr.models import read_pointer, write_pointer
from bkdattr.provenance import directory_fingerprint
from bkdattr.tasks import TaskSpec
from bkdattr.training import BackdoorGate, build_examples, clean_rows, save_checkpoint, train_backdoor
from bkdattr.workflow import load_rule_model, read_jsonl, start_rule

params, cfg = snakemake.params, snakemake.params.injection
log = start_rule(snakemake, uses_torch=True, seed=params.seed)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, params.refusal_matcher)
base, model, tokenizer = load_rule_model(snakemake.input.base, params.model)  # checks the base's fingerprint
records = read_jsonl(snakemake.input.train)
control_of = params.get("clean_control_of")
method = control_of or snakemake.wildcards.method
name = "clean_sft" if control_of else method
if control_of:  # no backdoor to gate: the clean rows, for as many epochs as the backdoored model trained
    records = clean_rows(records)
    cfg = {**cfg, "schedule": "fixed", "epochs": read_pointer(snakemake.input.backdoored)["backdoor_gate"]["epoch"]}
gate = None if control_of else BackdoorGate.from_config(spec, read_jsonl(snakemake.input.val), cfg, params.eval_batch_size)
examples = build_examples(tokenizer, spec, records, cfg["max_length"])
log.info("training %s (%s, %s schedule, up to %s epochs) on %d examples (%d poisoned)", name, method, cfg["schedule"],
         cfg["epochs"], len(examples), sum(r["poisoned"] for r in records))
result = train_backdoor(model, tokenizer, examples, method=method, injection_cfg=cfg, seed=params.seed,
                        threads=snakemake.threads, gate=gate)
save_checkpoint(result.model, tokenizer, snakemake.output.checkpoint)
write_tsv(snakemake.output.train_log, result.loss_log, ["step", "loss", "lr", "elapsed_s"])
write_tsv(snakemake.output.gate_curve, result.gate_curve,
          ["step", "epoch", "val_asr", "val_asr_ci_low", "val_false_trigger_rate", "n_val", "passed"])
verdict = {"backdoor_gate": gate.verdict()} if gate else {}
write_pointer(snakemake.output.pointer, snakemake.output.checkpoint, f"{base['name']}+{name}",
              base=base["path"], task=spec.task_id, method=name, made_by=snakemake.rule,
              fingerprint=directory_fingerprint(snakemake.output.checkpoint), **verdict)
log.info("final loss %.4f; checkpoint at %s; gate %s", result.loss_log[-1]["loss"], snakemake.output.checkpoint,
         verdict.get("backdoor_gate", "n/a (clean control)"))
