# The papers' tables and figures from the workflow's own results (rule all's last step).


rule tables:
    """Zero-shot, fine-tuning and summary tables (CSV, Markdown, LaTeX) and figures."""
    input:
        blimp=expand(f"{R}/eval/blimp/{{suite}}/{{model}}.json", suite=SUITES, model=MODELS),
        finetune=expand(
            f"{R}/eval/finetune/{{task}}/{{model}}.json", task=TASKS, model=FINETUNE_MODELS
        ),
        models=expand(f"{R}/models/{{model}}", model=MODELS),
    output:
        summary=report(f"{R}/tables/summary.csv", caption="../report/summary.rst", category="Tables"),
        zero_shot=report(
            f"{R}/tables/zero_shot.csv", caption="../report/zero_shot.rst", category="Tables"
        ),
        finetune=report(
            f"{R}/tables/finetune.csv", caption="../report/finetune.rst", category="Tables"
        ),
        markdown=f"{R}/tables/summary.md",
        zero_shot_figure=report(
            f"{R}/figures/zero_shot.png", caption="../report/zero_shot_figure.rst", category="Figures"
        ),
        finetune_figure=report(
            f"{R}/figures/finetune.png", caption="../report/finetune_figure.rst", category="Figures"
        ),
        curves=report(
            f"{R}/figures/training_curves.png", caption="../report/curves.rst", category="Figures"
        ),
    params:
        models=" ".join(MODELS),
        metrics=lambda w, input: " ".join(
            f"{m}={d}/metrics.csv" for m, d in zip(MODELS, input.models)
        ),
        provenance=lambda w, input: " ".join(
            f"{m}={d}/provenance.json" for m, d in zip(MODELS, input.models)
        ),
        compare=" ".join(
            f"{n}={bdconfig.baseline_of(config, n)}"
            for n in PRETRAIN + DISTILL
            if bdconfig.baseline_of(config, n)
        ),
        out=lambda w, output: os.path.dirname(os.path.dirname(output.summary)),
    log:
        f"{LOGS}/tables.log",
    benchmark:
        f"{BENCH}/tables.tsv"
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    shell:
        "python -m babydistill.tables --blimp {input.blimp} --finetune {input.finetune}"
        " --metrics {params.metrics} --provenance {params.provenance} --models {params.models}"
        " --compare {params.compare}"
        " --out {params.out} > {log} 2>&1"
