"""``python -m babydistill``: list the stages, each run as ``python -m babydistill.<layer>.<stage>``.

A stage is called by its full module path (the rule shows exactly which module runs, and
each module owns its own argument parser); this entry only prints the map.
"""

from babydistill import __doc__ as PACKAGE_DOC

STAGES = {  # rule -> module
    "demo_world": "babydistill.data.demo_world",
    "download_corpus, download_suite, download_glue": "babydistill.data.download",
    "clean_source": "babydistill.data.clean",
    "clean_stats": "babydistill.data.clean_stats",
    "select_split": "babydistill.data.select_split",
    "train_tokenizer": "babydistill.data.tokenizer",
    "tokenize_split": "babydistill.data.tokenize_split",
    "pretrain": "babydistill.train.pretrain (through babydistill.train.launch)",
    "teacher_cache": "babydistill.distill.teacher_cache",
    "distill": "babydistill.distill.student (through babydistill.train.launch)",
    "wml_peer": "babydistill.distill.wml",
    "ensemble": "babydistill.distill.ensemble",
    "lm_eval_tasks": "babydistill.eval.lm_eval_tasks",
    "eval_blimp": "babydistill.eval.blimp",
    "eval_revisions": "babydistill.eval.revisions",
    "finetune": "babydistill.eval.finetune",
    "model_card": "babydistill.report.model_card",
    "tables": "babydistill.report.tables",
    "learning_curves": "babydistill.report.learning_curves",
    "export (snakemake exports)": "babydistill.export (babydistill.report.export)",
    "sweep_worker": "babydistill.sweep.worker",
    "sweep_results": "babydistill.sweep.results",
    "(config check)": "babydistill.config",
}


def main() -> None:
    print(PACKAGE_DOC.strip())
    print("\nrule -> python -m MODULE --help")
    for rule, module in STAGES.items():
        print(f"  {rule:<48} {module}")


if __name__ == "__main__":
    main()
