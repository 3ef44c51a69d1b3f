# Teachers and baselines trained from scratch (config pretrain:).


rule pretrain:
    """Train one model from scratch; resumes from its last checkpoint after a kill."""
    input:
        unpack(training_inputs("pretrain")),
    output:
        directory(f"{R}/models/{one_of('name', PRETRAIN)}"),
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
        args=training_args("pretrain"),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.train.launch --gpus {resources.gpu}"
        " -- babydistill.train.pretrain {params.args} > {log} 2>&1"
