# Reports from the workflow's own results: the papers' tables and figures (rule all's last
# step) and a model card per model (after all of its evaluations).

import os

TABLES = config.get("tables") or {}
PAPER_TABLES = list(TABLES.get("paper") or {})
PAPER_FIGURES = [
    n
    for n, t in (TABLES.get("paper") or {}).items()
    if t["kind"] in ("zero_shot", "finetune")
]
# The WML runs: each writes its peer weights' trajectory, models/<run>/wml_weights.csv.
WML = [
    n for n in DISTILL if bdconfig.run_of(config, "distill", n)["objective"] == "wml"
]
# NAME=PATH of the files in the model folders (inputs) that the tables CLI reads
METRICS = [f"{m}={R}/models/{m}/metrics.csv" for m in MODELS]
PROVENANCE = [f"{m}={R}/models/{m}/provenance.json" for m in MODELS]
WML_WEIGHTS = [f"{n}={R}/models/{n}/wml_weights.csv" for n in WML]
# --tables-config: the tables: section, and the challenge the budget table holds models to
TABLES_CLI = {**TABLES, "challenge": config.get("challenge")}
# a sweep's best run (sweep:<name>:best) in the tables: run -> its sweep and base run
# (named only when there is one: the other configs' command lines stay as they were)
SWEPT = {
    bdconfig.names.base_name(m): {
        "sweep": b["sweep"],
        "base": bdconfig.names.base_name(SWEEPS[b["sweep"]]["base"]),
    }
    for m, b in SWEEP_BEST.items()
}
if SWEPT:
    TABLES_CLI["sweep_best"] = SWEPT
# STUDENT=BASELINE pairs of the tables' verdicts
COMPARE = [
    f"{n}={b}" for n in PRETRAIN + DISTILL if (b := bdconfig.baseline_of(config, n))
]

TABLE_INPUTS = {
    "blimp": expand(
        f"{R}/eval/blimp/{{suite}}/{{model}}.json", suite=SUITES, model=MODELS
    ),
    "finetune": expand(
        f"{R}/eval/finetune/{{task}}/{{model}}.json", task=TASKS, model=FINETUNE_MODELS
    ),
    # the paper tables' own pipelines (PAPER_SCORINGS), where a suite's is another
    "paper_blimp": [
        f"{R}/eval/blimp/{suite}/{convention}/{model}.json"
        for suite, convention, model in PAPER_SCORINGS
    ],
    "models": expand(f"{R}/models/{{model}}", model=MODELS),
    # wml_weights.csv lies inside the run's model folder (distill's directory output):
    # Snakemake can match only the folder, so the folder is the input, the file its flag
    "wml_runs": expand(f"{R}/models/{{model}}", model=WML),
}
# report() captions (workflow/report/<caption>.rst) and categories in `snakemake --report`
REPORT = {
    name: {"caption": f"../report/{caption}.rst", "category": category}
    for name, caption, category in [
        ("summary", "summary", "Tables"),
        ("zero_shot", "zero_shot", "Tables"),
        ("finetune", "finetune", "Tables"),
        ("provenance", "provenance", "Tables"),
        ("budget", "budget", "Tables"),
        ("paper", "paper_table", "Paper tables"),
        ("paper_figures", "paper_figure", "Paper tables"),
        ("zero_shot_figure", "zero_shot_figure", "Figures"),
        ("finetune_figure", "finetune_figure", "Figures"),
        ("curves", "curves", "Figures"),
        ("learning_curves", "learning_curves", "Tables"),
        ("learning_curves_figure", "learning_curves_figure", "Figures"),
    ]
}


T = f"{R}/tables"
F = f"{R}/figures"
# named outputs; the HTML tables and the figures are shown in `snakemake --report`
TABLE_OUTPUTS = {
    "summary": f"{T}/summary.csv",
    "zero_shot": f"{T}/zero_shot.csv",
    "finetune": f"{T}/finetune.csv",
    "markdown": f"{T}/summary.md",
    **{
        f"{n}_html": report(f"{T}/{n}.html", **REPORT[n])
        for n in ("summary", "zero_shot", "finetune", "provenance", "budget")
    },
    "paper": report(
        expand(f"{T}/paper/{{name}}.html", name=PAPER_TABLES), **REPORT["paper"]
    ),
    "paper_files": expand(
        f"{T}/paper/{{name}}.{{ext}}", name=PAPER_TABLES, ext=["csv", "md", "tex"]
    ),
    "paper_figures": report(
        expand(f"{F}/paper/{{name}}.png", name=PAPER_FIGURES), **REPORT["paper_figures"]
    ),
    "zero_shot_figure": report(f"{F}/zero_shot.png", **REPORT["zero_shot_figure"]),
    "finetune_figure": report(f"{F}/finetune.png", **REPORT["finetune_figure"]),
    "curves": report(f"{F}/training_curves.png", **REPORT["curves"]),
}


rule tables:
    """The zero-shot, fine-tuning, summary, provenance, budget and papers' tables, figures."""
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
        metrics=METRICS,
        provenance=PROVENANCE,
        models=MODELS,
        distilled=DISTILL,
        wml=WML_WEIGHTS,
        compare=COMPARE,
        tables=lambda w: as_json(TABLES_CLI),
        tasks=lambda w: as_json(TASKS),
        out=lambda w, output: os.path.dirname(os.path.dirname(output.summary)),
    shell:
        "python -m babydistill.report.tables --blimp {input.blimp} --finetune {input.finetune}"
        " --metrics {params.metrics} --provenance {params.provenance} --models {params.models}"
        " --distilled {params.distilled} --wml-weights {params.wml} --compare {params.compare}"
        " --paper-blimp {input.paper_blimp} --tables-config {params.tables:q}"
        " --finetune-tasks {params.tasks:q} --out {params.out} > {log} 2>&1"


# The tasks a model is fine-tuned on (an ensemble is scored zero-shot only).
CARD_TASKS = {m: list(TASKS) if m in FINETUNE_MODELS else [] for m in MODELS}


rule model_card:
    """The model's Hugging Face card: the README.md to upload with its model folder."""
    input:
        model=f"{R}/models/{{model}}",
        blimp=lambda w: [f"{R}/eval/blimp/{s}/{w.model}.json" for s in SUITES],
        finetune=lambda w: [
            f"{R}/eval/finetune/{t}/{w.model}.json" for t in CARD_TASKS[w.model]
        ],
    output:
        f"{R}/model_cards/{{model}}/README.md",
    log:
        f"{LOGS}/model_card/{{model}}.log",
    benchmark:
        f"{BENCH}/model_card/{{model}}.tsv"
    conda:
        ENV
    resources:
        **job_resources("model_card"),
    shell:
        "python -m babydistill.report.model_card --model-dir {input.model}"
        " --blimp {input.blimp} --finetune {input.finetune} --out {output} > {log} 2>&1"


# The learning curves: every trained model's checkpoints by words seen, roles side by side
LEARNING_CURVES = {
    **{ext: f"{T}/learning_curves.{ext}" for ext in ("csv", "md", "tex")},
    "html": report(f"{T}/learning_curves.html", **REPORT["learning_curves"]),
    "png": report(f"{F}/learning_curves.png", **REPORT["learning_curves_figure"]),
    "pdf": f"{F}/learning_curves.pdf",
}


rule learning_curves:
    """Accuracy by words seen of every checkpoint: teachers, baselines, students side by side."""
    input:
        expand(f"{R}/eval/revisions/{{model}}.json", model=TRAINED),
    output:
        **LEARNING_CURVES,
    log:
        f"{LOGS}/learning_curves.log",
    benchmark:
        f"{BENCH}/learning_curves.tsv"
    conda:
        ENV
    resources:
        **job_resources("learning_curves"),
    params:
        models=TRAINED,
        roles=lambda w: as_json(bdconfig.model_roles(config)),
        tables=lambda w, output: os.path.dirname(output.csv),
        figures=lambda w, output: os.path.dirname(output.png),
    shell:
        "python -m babydistill.report.learning_curves --revisions {input} --models {params.models}"
        " --roles {params.roles:q} --tables {params.tables} --figures {params.figures} > {log} 2>&1"


# The official results layout (export:): a model's revisions' fast predictions and its final
# model's full ones (eval_blimp's pairs), each suite as the official dataset it stands for
EXPORT = bdconfig.section(config, "export")
EXPORT_MODELS = EXPORT["models"] or TRAINED
DATASETS = [f"{s}={bdconfig.challenge.official_dataset(config, s)}" for s in SUITES]


rule export:
    """One model's folder of the official results directory (python -m babydistill.export)."""
    input:
        revisions=f"{R}/eval/revisions/{{model}}.json",
        suites=expand(f"{R}/data/suites/{{suite}}", suite=SUITES),
        full=lambda w: [f"{R}/eval/blimp/{s}/{w.model}.pairs.tsv" for s in SUITES],
    output:
        directory(f"{R}/export/results/{one_of('model', TRAINED)}"),
    log:
        f"{LOGS}/export/{{model}}.log",
    benchmark:
        f"{BENCH}/export/{{model}}.tsv"
    conda:
        ENV
    resources:
        **job_resources("export"),
    params:
        suites=[f"{s}={R}/data/suites/{s}" for s in SUITES],
        datasets=DATASETS,
        full=lambda w: [f"{s}={R}/eval/blimp/{s}/{w.model}.pairs.tsv" for s in SUITES],
        full_limit=flags("--full-limit", BLIMP.get("limit")),
        track=bdconfig.export_track(config),
    shell:
        "python -m babydistill.export --revisions {input.revisions} --suite {params.suites:q}"
        " --dataset {params.datasets:q} --full {params.full:q} {params.full_limit:q}"
        " --track {params.track} --out {output} > {log} 2>&1"


rule exports:
    """The export of every model of export.models (default: every trained model)."""
    input:
        expand(f"{R}/export/results/{{model}}", model=EXPORT_MODELS),
