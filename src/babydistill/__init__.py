"""babydistill: the BabyLM knowledge-distillation papers as a Snakemake workflow.

The package is laid out like the DAG, one subpackage per layer; a layer imports only the
layers below it (a test walks every import):

    common            layer 0: errors, atomic writes, logging, progress, digests, paths
    config/           layer 1: config loading and schema, typed job specs, names, provenance
    data/             layer 2: download, clean, tokenizer, token splits, chunks, demo world
    models/           layer 3: presets built as HF models, loading, the ensemble's class
    eval/             layer 4: BLiMP scoring (lm-eval or the fast scorer), fine-tuning
    train/            layer 5: the trainer and its parts, launch, pretrain
    distill/          layer 6: KD and WML objectives, losses, teacher cache, ensembles
    report/           layer 7: tables, figures, model cards

A stage is a module with a CLI that one rule calls: ``python -m babydistill.<layer>.<stage>``
(``python -m babydistill`` lists them).
"""

__version__ = "0.1.0"
