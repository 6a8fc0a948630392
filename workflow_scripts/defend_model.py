"""Rule defend_model: a standard defence written as a checkpoint (clean fine-tuning, magnitude pruning, random heads
pruned), matched to the head cleaning where it needs a size."""

from bkdattr.defences import run_defend_model
from bkdattr.gate import enforce_gate
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import load_rule_model, start_rule

params, inputs, out = snakemake.params, snakemake.input, snakemake.output
log = start_rule(snakemake, uses_torch=True, seed=params.seed)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, params.evaluation["refusal_matcher"])
pointer, model, tokenizer = load_rule_model(inputs.model, params.model)
enforce_gate(pointer, params.gate_on_fail, snakemake.rule, log)
run_defend_model(model, tokenizer, spec, snakemake.wildcards.defence, pointer, inputs, out, params, log)
