# Teachers and baselines trained from scratch (config pretrain:).


rule pretrain:
    """Train one model from scratch; resumes from its last checkpoint after a kill."""
    input:
        train=f"{R}/tokens/train.json",
        dev=f"{R}/tokens/{EVAL_SPLIT}.json",  # the eval-loss split
        tokenizer=f"{R}/tokenizer",
        # per-epoch BLiMP curves (training key blimp_every_epoch): the first suite
        blimp_suite=lambda w: blimp_curve_suite("pretrain", w.name),
    output:
        directory(f"{R}/models/{{name}}"),
    log:
        f"{LOGS}/pretrain/{{name}}.log",
    benchmark:
        f"{BENCH}/pretrain/{{name}}.tsv"
    wildcard_constraints:
        name=alternation(PRETRAIN),
    conda:
        ENV
    threads: 2
    resources:
        gpu=lambda w: bdconfig.gpus(config, "pretrain", w.name),
        mem_mb=lambda w: bdconfig.job_resources(config, "pretrain", w.name)["mem_mb"],
        runtime=lambda w: bdconfig.job_resources(config, "pretrain", w.name)["runtime"],
    params:
        spec=lambda w: as_json(bdconfig.pretrain_spec(config, w.name)),
        checkpoints=lambda w: f"{R}/checkpoints/{w.name}",
        train=lambda w, input: token_prefix(input.train),
        dev=lambda w, input: token_prefix(input.dev),
        blimp=lambda w: " ".join(
            f"--blimp-suite {d}" for d in blimp_curve_suite("pretrain", w.name)
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.launch --gpus {resources.gpu} -- babydistill.pretrain"
        " --spec {params.spec:q} --train {params.train} --dev {params.dev}"
        " --tokenizer {input.tokenizer} --out {output} --checkpoint-dir {params.checkpoints}"
        " {params.blimp}"
        " > {log} 2>&1 && python -m babydistill.provenance --model-dir {output}"
        " --spec {params.spec:q} --input {input.train} --input {input.dev}"
        " --input {input.tokenizer} >> {log} 2>&1"
        " && python -m babydistill.model_card --model-dir {output} >> {log} 2>&1"
