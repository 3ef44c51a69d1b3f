# Teachers and baselines trained from scratch (config pretrain:).


rule pretrain:
    """Train one model from scratch; resumes from its last checkpoint after a kill."""
    input:
        unpack(training_inputs("pretrain")),
    output:
        directory(f"{R}/models/{one_of('name', PRETRAIN_RUNS)}"),
    log:
        f"{LOGS}/pretrain/{{name}}.log",
    benchmark:
        f"{BENCH}/pretrain/{{name}}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        **job_resources("pretrain"),
    params:
        spec=lambda w: as_json(bdconfig.pretrain_spec(config, w.name)),
        train=lambda w, input: token_prefix(input.train),
        dev=lambda w, input: token_prefix(input.dev),
        checkpoints=f"{R}/checkpoints/{{name}}",
        blimp=lambda w, input: flags("--blimp-suite", input.blimp_suite),
        at_words=AT_WORDS,
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.train.launch --gpus {resources.gpu}"
        " -- babydistill.train.pretrain --spec {params.spec:q} --train {params.train}"
        " --dev {params.dev} --tokenizer {input.tokenizer} --out {output}"
        " --checkpoint-dir {params.checkpoints} {params.blimp:q} --at-words {params.at_words:q}"
        " > {log} 2>&1"
