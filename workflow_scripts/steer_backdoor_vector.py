"""Rule steer_backdoor_vector: backdoor vector from the top heads; layer sweep, best layer, controls."""

from bkdattr.atomic import read_tsv, write_tsv
from bkdattr.gate import enforce_gate
from bkdattr.interventions import (InterventionEvaluator, mean_head_outputs, resolve_k, run_steering,
                                   steering_layers, steering_vectors)
from bkdattr.names import BACKDOOR_VECTOR
from bkdattr.tasks import TaskSpec
from bkdattr.workflow import load_rule_model, read_jsonl, start_rule

params, steer = snakemake.params, snakemake.params.interventions["steering"]
log = start_rule(snakemake, uses_torch=True)
spec = TaskSpec.from_config(snakemake.wildcards.task, params.settings, params.refusal_matcher)
pointer, model, tokenizer = load_rule_model(snakemake.input.model, params.model)
enforce_gate(pointer, params.gate_on_fail, "steer_backdoor_vector", log)  # stops here if not implanted
poisoned = [r for r in read_jsonl(snakemake.input.train) if r["poisoned"]]
means = mean_head_outputs(model, tokenizer, spec, poisoned, params.cache_batch_size, origin=snakemake.input.train)
(k,) = resolve_k([steer["k"]], means.shape[0] * means.shape[1])
vectors = steering_vectors(means, [(int(r["layer"]), int(r["head"])) for r in read_tsv(snakemake.input.ranking)], k,
                           steer["seed"])
log.info("backdoor vector from %d heads over %d poisoned prompts, norm %.3f", k, len(poisoned), vectors[BACKDOOR_VECTOR].norm())
benign = read_jsonl(snakemake.input.benign) if "benign" in snakemake.input.keys() else None
evaluator = InterventionEvaluator(model, tokenizer, spec, read_jsonl(snakemake.input.test), params.interventions["max_new_tokens"],
                                  params.interventions["batch_size"], n_eval=params.interventions["n_eval"], benign=benign)
sweep, best = run_steering(evaluator, vectors, steering_layers(steer, means.shape[0]), scale=steer["scale"], k=k,
                           val_fraction=steer["val_fraction"], seed=steer["seed"], select_on=steer["select_layer_on"],
                           progress=lambda r: log.info("%s %s layer %d: ASR val %.3f test %.3f", r["vector"],
                                                       r["direction"], r["layer"], r["asr_val"], r["asr_test"]))
write_tsv(snakemake.output.sweep, sweep)
write_tsv(snakemake.output.best, best)
log.info("wrote %s and %s", snakemake.output.sweep, snakemake.output.best)
