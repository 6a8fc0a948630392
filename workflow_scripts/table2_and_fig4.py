"""Rule table2_and_fig4: Table 2 (backdoor vector at the best layer) and Fig. 4 (layer sweep)."""
from pathlib import Path

from bkdattr.atomic import read_tsv, write_text, write_tsv_union
from bkdattr.gate import implanted_by_run
from bkdattr.figures import plot_fig4
from bkdattr.reports import table2_markdown, table2_rows
from bkdattr.workflow import start_rule

log = start_rule(snakemake)
name = snakemake.params.model_name
t2 = table2_rows(snakemake.input.best, implanted_by_run(read_tsv(snakemake.input.gate)))
write_tsv_union(snakemake.output.table2_tsv, t2)
write_text(snakemake.output.table2_md, table2_markdown(t2, name))
plot_fig4({tuple(Path(p).parts[-3:-1]): p for p in snakemake.input.sweep}, snakemake.output.fig4_pdf,
          snakemake.output.fig4_png, model_name=name)
log.info("wrote table 2 and fig4")
