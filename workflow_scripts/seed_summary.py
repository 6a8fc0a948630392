"""Rule seed_summary: the injection seeds side by side (held-out metrics, ACIE overlap and correlation between
seeds, Table 1's curve as a band)."""

from bkdattr.atomic import read_matrix_tsv, read_tsv, write_text, write_tsv_union
from bkdattr.seeds import band_rows, curve_rows, pair_rows, plot_seed_bands, seeds_markdown, summary_rows
from bkdattr.workflow import start_rule

params, inp, out = snakemake.params, snakemake.input, snakemake.output
log = start_rule(snakemake)
runs = [(r["task"], r["method"], r["seed"]) for r in params.runs]  # aligned with every input list
maps = {run: read_matrix_tsv(path) for run, path in zip(runs, inp.acie)}
summary = summary_rows({run: read_tsv(path) for run, path in zip(runs, inp.metrics)}, maps, params.top_fractions)
curves = curve_rows({run: read_tsv(path) for run, path in zip(runs, inp.ablation)})
bands = band_rows(curves)
write_tsv_union(out.tsv, summary)
write_tsv_union(out.pairs, pair_rows(maps, params.top_fractions))
write_tsv_union(out.bands, bands)
write_text(out.md, seeds_markdown(summary, bands, params.model_name, params.top_fractions))
plot_seed_bands(curves, bands, out.pdf, out.png, model_name=params.model_name)
log.info("%d runs (%d seeds per method) -> %s, %s and %s", len(runs), len({r[2] for r in runs}), out.tsv, out.md, out.pdf)
