# The run record for the report: the effective config and the installed versions of the pinned libraries.


rule run_record:
    output:
        config=report("results/report/config.yaml", caption="report/run_config.rst", category="7 Run record",
                      labels={"record": "effective config"}),
        versions=report("results/report/versions.tsv", caption="report/run_versions.rst", category="7 Run record",
                        labels={"record": "package versions"}),
    log:
        "results/logs/run_record.log",
    params:
        config=config,  # the whole effective config: any change reruns this record
    resources:
        mem_mb=500,
        runtime=2,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow_scripts/run_record.py"
