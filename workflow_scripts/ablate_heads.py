"""Rule ablate_heads: ASR, false triggers and utility with the top-k ACIE heads zeroed (and controls)."""

from bkdattr.atomic import write_tsv
from bkdattr.attribution import read_ranking
from bkdattr.hooks import ModelSites
from bkdattr.interventions import InterventionEvaluator, run_ablation
from bkdattr.tasks import TaskSpec
from bkdattr.gate import enforce_gate
from bkdattr.workflow import load_rule_model, read_jsonl, start_rule

params = snakemake.params
cfg = params.interventions
log = start_rule(snakemake, uses_torch=True)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, params.evaluation["refusal_matcher"])
pointer, model, tokenizer = load_rule_model(snakemake.input.model, params.model)
enforce_gate(pointer, params.gate_on_fail, "ablate_heads", log)  # stops here if not implanted
sites = ModelSites.of(model)
ranking = read_ranking(snakemake.input.ranking)
records = read_jsonl(snakemake.input.test)
evaluator = InterventionEvaluator(model, tokenizer, spec, records, cfg["max_new_tokens"], cfg["batch_size"],
                                  n_eval=cfg["n_eval"], seed=cfg["sample_seed"],
                                  compliance=params.evaluation.get("compliance"),
                                  benign=read_jsonl(snakemake.input.benign) if "benign" in snakemake.input.keys() else None)
rows = run_ablation(evaluator, ranking, sites.n_layers, sites.n_heads, k_values=cfg["k"],
                    random_seeds=cfg["random_seeds"], all_positions_variant=cfg["all_positions_variant"],
                    progress=lambda r: log.info("%s seed=%s %s k=%d: ASR %.3f (n=%d), utility %.3f", r["heads"],
                                                r["seed"], r["variant"], r["k"], r["asr"], r["asr_n"], r["clean_utility"]))
write_tsv(snakemake.output.tsv, rows)
log.info("wrote %s", snakemake.output.tsv)
