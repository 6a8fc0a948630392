"""Rule summary: results/summary.md, the run's headline tables in one page (bkdattr.summary)."""

from bkdattr.atomic import read_tsv, write_text
from bkdattr.summary import summary_markdown
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
inp = snakemake.input
write_text(snakemake.output.md, summary_markdown(snakemake.params.model_name, read_tsv(inp.injection),
                                                 read_tsv(inp.table1), read_tsv(inp.table2)))
log.info("wrote %s", snakemake.output.md)
