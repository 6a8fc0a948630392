"""Rule clean_model: choose the top-k heads (or the backdoor vector's layer) on the validation split under the
utility floor, write the cleaning into the weights, save the checkpoint with its model card."""

from bkdattr.defences import run_clean_model
from bkdattr.workflow import rule_context

log, spec, pointer, model, tokenizer = rule_context(snakemake, gate="clean_model")  # stops here if not implanted
run_clean_model(model, tokenizer, spec, snakemake.wildcards.how, pointer, snakemake.input, snakemake.output,
                snakemake.params, log)
