"""Rule gate_table: whether each task's backdoor was implanted (validation ASR and false triggers vs the gate)."""

from bkdattr.atomic import write_tsv
from bkdattr.gate import GATE_COLUMNS, gate_rows
from bkdattr.models import read_pointer
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
pointers = {(p["task"], p["method"]): p for p in map(read_pointer, snakemake.input.pointers)}
rows = gate_rows(pointers)
write_tsv(snakemake.output.tsv, rows, GATE_COLUMNS)
for row in rows:
    log.info("%s %s: backdoor implanted %s (validation ASR %s)", row["task"], row["method"], row["backdoor_implanted"],
             row["val_asr"])
