# babydistill: the BabyLM knowledge-distillation papers as one DAG.
#
#   corpus -> clean_source -> train_tokenizer -> tokenize_split -> pretrain (teachers,
#   baselines) -> distill (variants) -> eval_blimp / finetune -> tables, model_card
#
# Full size:  snakemake --cores 8 --resources gpu=1         (config.yaml)
# Demo:       snakemake --profile workflow/profiles/demo    (workflow/demo.yaml)
# The logic lives in the babydistill package; each rule calls one stage's CLI.

from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/sweep.smk"


rule all:
    default_target: True
    input:
        all_targets(),


rule sweeps:
    """Every sweep of config sweeps: its trials table and best trial."""
    input:
        [f"{R}/sweeps/{s}/best.yaml" for s in SWEEPS],


rule paper_tables:
    """The papers' tables named in config tables.paper, and their figures."""
    input:
        rules.tables.output.paper,
        rules.tables.output.paper_files,
        rules.tables.output.paper_figures,
