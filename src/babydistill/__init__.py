"""babydistill: the BabyLM knowledge-distillation papers as a Snakemake workflow.

Each stage of the DAG is a module here with a small CLI that a rule's ``shell:`` calls:
demo_world, download, clean, tokenizer, tokenize_split, pretrain, distill, teacher_cache,
ensemble, eval_blimp, finetune, tables.
"""

__version__ = "0.1.0"
