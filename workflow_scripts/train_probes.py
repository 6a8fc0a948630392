"""Rule train_probes: MLP and RBF-SVM probes per layer, and the inter-layer matrices (ILCA)."""

from bkdattr.atomic import write_matrix_tsv, write_safetensors, write_tsv
from bkdattr.caching import load_cache
from bkdattr.models import read_pointer
from bkdattr.probes import ACCURACY_COLUMNS, ilca_intervals, layer_probe_results, mlp_probe_tensors, probe_groups
from bkdattr.workflow import start_rule

params, inp, out = snakemake.params, snakemake.input, snakemake.output
log = start_rule(snakemake, uses_torch=True, seed=params.seed)
cache = load_cache(inp.tensors, inp.sidecar, model_name=read_pointer(inp.model)["name"], task=snakemake.wildcards.task)
results = layer_probe_results(cache["resid_probe"].numpy(), cache["labels"].numpy(),
                              probe_groups(cache, params.probes["split"]), seed=params.seed, epochs=params.probes["epochs"])
write_tsv(out.accuracy, results["accuracy"], ACCURACY_COLUMNS)
write_tsv(out.ilca_intervals, ilca_intervals(results))
write_matrix_tsv(out.ilca_mlp, results["ilca_mlp"], corner="train_layer/test_layer")
write_matrix_tsv(out.ilca_svm, results["ilca_svm"], corner="train_layer/test_layer")
write_safetensors(out.mlp_probes, mlp_probe_tensors(results))
best = max((r for r in results["accuracy"] if r["probe"] == "mlp"), key=lambda r: r["test_acc"])
log.info("best MLP probe: layer %d, test accuracy %.3f; wrote %s, the ILCA matrices and %s", best["layer"],
         best["test_acc"], out.accuracy, out.mlp_probes)
