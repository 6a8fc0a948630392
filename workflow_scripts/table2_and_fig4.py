"""Rule table2_and_fig4: Table 2 (backdoor vector at the best layer) and Fig. 4 (layer sweep)."""

from bkdattr.atomic import read_tsv, write_text, write_tsv_union
from bkdattr.figures import plot_fig4
from bkdattr.gate import implanted_by_run
from bkdattr.reports import table2_markdown, table2_rows
from bkdattr.workflow import start_rule

params, inp, out = snakemake.params, snakemake.input, snakemake.output
log = start_rule(snakemake)
runs = [(r["task"], r["method"]) for r in params.runs]  # aligned with the sweep and best inputs
t2 = table2_rows(dict(zip(runs, inp.best)), implanted_by_run(read_tsv(inp.gate)))
write_tsv_union(out.table2_tsv, t2)
write_text(out.table2_md, table2_markdown(t2, params.model_name))
plot_fig4(dict(zip(runs, inp.sweep)), out.fig4_pdf, out.fig4_png, model_name=params.model_name)
log.info("wrote table 2 and fig4")
