"""Rule prepare_base_model: write the base checkpoint (GGUF dequantised, or tiny random Llama) and its pointer."""

from bkdattr.models import build_tiny_model, convert_gguf_checkpoint, load_model, model_provenance, write_pointer
from bkdattr.names import BASE_MODEL
from bkdattr.workflow import start_rule

model_cfg = snakemake.params.model
log = start_rule(snakemake, uses_torch=True, seed=snakemake.params.seed)
if model_cfg["source"] == "smollm2_wheel":
    convert_gguf_checkpoint(snakemake.input.gguf, snakemake.output.checkpoint)
    path = snakemake.output.checkpoint
elif model_cfg["source"] == "tiny":
    build_tiny_model(snakemake.output.checkpoint, seed=snakemake.params.seed, sizes=model_cfg.get("tiny"))
    path = snakemake.output.checkpoint
else:
    path = model_cfg["path"]
# Load once here so a wrong path, a non-causal-LM or a tokenizer without chat template fails now.
model, tokenizer = load_model(path, model_cfg.get("dtype", "float32"), model_cfg.get("trust_remote_code", False))
n_params = sum(p.numel() for p in model.parameters())
# BASE_MODEL, not model.name: the name is a label for tables and figures, and renaming must rerun only those
write_pointer(snakemake.output.pointer, path, BASE_MODEL, source=model_cfg["source"],
              architecture=type(model).__name__, n_parameters=n_params, made_by="prepare_base_model",
              **model_provenance(path, model))
log.info("base model (%s, %.1fM parameters) at %s", type(model).__name__, n_params / 1e6, path)
