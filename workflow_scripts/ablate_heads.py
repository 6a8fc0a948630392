"""Rule ablate_heads: ASR, false triggers and utility with the top-k ACIE heads zeroed (and controls)."""

from bkdattr.atomic import write_tsv
from bkdattr.attribution import read_ranking
from bkdattr.hooks import ModelSites
from bkdattr.interventions import ABLATION_LOG, InterventionEvaluator, log_rows, run_ablation
from bkdattr.workflow import optional_jsonl, read_jsonl, rule_context

params, inp, cfg = snakemake.params, snakemake.input, snakemake.params.interventions
log, spec, _, model, tokenizer = rule_context(snakemake, gate="ablate_heads")  # stops here if not implanted
sites = ModelSites.of(model)
evaluator = InterventionEvaluator.from_config(model, tokenizer, spec, read_jsonl(inp.test), cfg,
                                              params.evaluation, benign=optional_jsonl(inp, "benign"))
rows = run_ablation(evaluator, read_ranking(inp.ranking), sites.n_layers, sites.n_heads, k_values=cfg["k"],
                    random_seeds=cfg["random_seeds"], all_positions_variant=cfg["all_positions_variant"],
                    progress=log_rows(log, ABLATION_LOG))
write_tsv(snakemake.output.tsv, rows)
log.info("wrote %s", snakemake.output.tsv)
