"""Rule clean_model: choose the top-k heads (or the backdoor vector's layer) on the validation split under the
utility floor, write the cleaning into the weights, save the checkpoint with its model card."""

from bkdattr.defences import run_clean_model
from bkdattr.gate import enforce_gate
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import load_rule_model, start_rule

params, inputs, out = snakemake.params, snakemake.input, snakemake.output
log = start_rule(snakemake, uses_torch=True, seed=params.seed)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, params.evaluation["refusal_matcher"])
pointer, model, tokenizer = load_rule_model(inputs.model, params.model)
enforce_gate(pointer, params.gate_on_fail, snakemake.rule, log)  # stops here if not implanted
run_clean_model(model, tokenizer, spec, snakemake.wildcards.how, pointer, inputs, out, params, log)
