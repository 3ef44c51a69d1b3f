# The papers' tables and figures from the workflow's own results (rule all's last step).


rule tables:
    """Zero-shot, fine-tuning, summary, provenance and the papers' tables (CSV, Markdown,
    LaTeX, HTML) and figures, with seed-aware verdicts."""
    input:
        **TABLE_INPUTS,
    output:
        **TABLE_OUTPUTS,
    log:
        f"{LOGS}/tables.log",
    benchmark:
        f"{BENCH}/tables.tsv"
    conda:
        ENV
    resources:
        **job_resources("tables"),
    params:
        args=tables_args,
    shell:
        "python -m babydistill.report.tables {params.args} > {log} 2>&1"
