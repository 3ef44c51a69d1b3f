# The papers' tables and figures from the workflow's own results (rule all's last step).

TABLES = config.get("tables") or {}
PAPER_TABLES = list(TABLES.get("paper") or {})
PAPER_FIGURES = [
    n
    for n, t in (TABLES.get("paper") or {}).items()
    if t["kind"] in ("zero_shot", "finetune")
]
# Only the WML runs' weights trajectories: read when the run wrote wml_weights.csv.
WML = [
    n for n in DISTILL if bdconfig.run_of(config, "distill", n)["objective"] == "wml"
]


rule tables:
    """Zero-shot, fine-tuning, summary, provenance and the papers' tables (CSV, Markdown,
    LaTeX, HTML) and figures, with seed-aware verdicts."""
    input:
        blimp=expand(
            f"{R}/eval/blimp/{{suite}}/{{model}}.json", suite=SUITES, model=MODELS
        ),
        finetune=expand(
            f"{R}/eval/finetune/{{task}}/{{model}}.json",
            task=TASKS,
            model=FINETUNE_MODELS,
        ),
        models=expand(f"{R}/models/{{model}}", model=MODELS),
    output:
        summary=f"{R}/tables/summary.csv",
        zero_shot=f"{R}/tables/zero_shot.csv",
        finetune=f"{R}/tables/finetune.csv",
        markdown=f"{R}/tables/summary.md",
        summary_html=report(
            f"{R}/tables/summary.html",
            caption="../report/summary.rst",
            category="Tables",
        ),
        zero_shot_html=report(
            f"{R}/tables/zero_shot.html",
            caption="../report/zero_shot.rst",
            category="Tables",
        ),
        finetune_html=report(
            f"{R}/tables/finetune.html",
            caption="../report/finetune.rst",
            category="Tables",
        ),
        provenance_html=report(
            f"{R}/tables/provenance.html",
            caption="../report/provenance.rst",
            category="Tables",
        ),
        paper=report(
            expand(f"{R}/tables/paper/{{name}}.html", name=PAPER_TABLES),
            caption="../report/paper_table.rst",
            category="Paper tables",
        ),
        paper_files=expand(
            f"{R}/tables/paper/{{name}}.{{ext}}",
            name=PAPER_TABLES,
            ext=["csv", "md", "tex"],
        ),
        paper_figures=report(
            expand(f"{R}/figures/paper/{{name}}.png", name=PAPER_FIGURES),
            caption="../report/paper_figure.rst",
            category="Paper tables",
        ),
        zero_shot_figure=report(
            f"{R}/figures/zero_shot.png",
            caption="../report/zero_shot_figure.rst",
            category="Figures",
        ),
        finetune_figure=report(
            f"{R}/figures/finetune.png",
            caption="../report/finetune_figure.rst",
            category="Figures",
        ),
        curves=report(
            f"{R}/figures/training_curves.png",
            caption="../report/curves.rst",
            category="Figures",
        ),
    log:
        f"{LOGS}/tables.log",
    benchmark:
        f"{BENCH}/tables.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=30,
    params:
        models=" ".join(MODELS),
        metrics=lambda w, input: " ".join(
            f"{m}={d}/metrics.csv" for m, d in zip(MODELS, input.models)
        ),
        provenance=lambda w, input: " ".join(
            f"{m}={d}/provenance.json" for m, d in zip(MODELS, input.models)
        ),
        distilled=" ".join(DISTILL),
        # where a WML run may have written its peer weights (the first that exists is read)
        wml_weights=" ".join(
            f"{n}={R}/{where}/wml_weights.csv"
            for n in WML
            for where in (f"models/{n}", f"models/{n}-peer1", f"checkpoints/{n}")
        ),
        compare=" ".join(
            f"{n}={bdconfig.baseline_of(config, n)}"
            for n in PRETRAIN + DISTILL
            if bdconfig.baseline_of(config, n)
        ),
        tables_config=as_json(TABLES),
        finetune_tasks=as_json(TASKS),
        out=lambda w, output: os.path.dirname(os.path.dirname(output.summary)),
    shell:
        "python -m babydistill.tables --blimp {input.blimp} --finetune {input.finetune}"
        " --metrics {params.metrics} --provenance {params.provenance} --models {params.models}"
        " --distilled {params.distilled} --wml-weights {params.wml_weights}"
        " --compare {params.compare} --tables-config {params.tables_config:q}"
        " --finetune-tasks {params.finetune_tasks:q}"
        " --out {params.out} > {log} 2>&1"
