# bkdattr-workflow: Backdoor Attribution (arXiv 2509.21761), from poisoned data to figures.
# Usage: snakemake --cores all [--configfile presets/paper.yaml] [target]
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


try:  # the Snakefile and rules/*.smk use the package: it must be installed where snakemake runs
    from bkdattr.provenance import load_yaml_unique
except ImportError as err:
    raise WorkflowError(f"the bkdattr package is not importable by this snakemake ({err}); install it into "
                        "snakemake's Python with `pip install -e .` from the repository root (README)") from err

# A key written twice in a config file would silently drop the first block (YAML keeps the last): refuse it.

for _configfile in workflow.configfiles:
    load_yaml_unique(_configfile)


try:  # the key at fault, one line, before validate() below would print the whole schema with it
    from bkdattr.config import ConfigError, check_config

    check_config(config, "config")
except ConfigError as err:
    raise WorkflowError(str(err)) from None

validate(config, "bkdattr/schemas/config.schema.yaml")


include: "rules/common.smk"
include: "rules/model.smk"
include: "rules/data.smk"
include: "rules/inject.smk"
include: "rules/evaluate.smk"
include: "rules/probes.smk"
include: "rules/attribution.smk"
include: "rules/interventions.smk"
include: "rules/run_record.smk"
include: "rules/seeds.smk"


report: "rules/report/workflow.rst"


# Summaries, tables and figures read small TSVs: on a cluster they run on the submitting node, not as jobs.
localrules:
    all,
    make_benign_requests,
    gate_table,
    injection_table,
    injection_methods_table,
    confirmation_table,
    probe_summary,
    fig2,
    attribution_summary,
    fig3,
    table1,
    table2_and_fig4,
    claims_report,
    summary,
    seed_summary,
    run_record,


rule all:
    input:
        all_targets(),
    default_target: True
