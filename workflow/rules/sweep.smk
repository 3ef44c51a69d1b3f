# Hyperparameter sweeps (config sweeps:, docs/sweeps.md): N workers, one GPU each, run the
# trials of one Optuna study; then its trials table and best trial. The study folder
# results/<run>/sweeps/<name>/study/ is shared state, like a database, not any one job's
# output: the workers append to its journal, a rerun continues it.

SWEEP_DIR = f"{R}/sweeps/{{sweep}}"


rule sweep_worker:
    """One worker of a sweep: trains trials of its base run until the study has them all."""
    input:
        unpack(sweep_inputs),
    output:
        f"{SWEEP_DIR}/workers/{{worker}}.json",
    log:
        f"{LOGS}/sweep_worker/{{sweep}}/{{worker}}.log",
    benchmark:
        f"{BENCH}/sweep_worker/{{sweep}}/{{worker}}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        **job_resources("sweep_worker"),
    params:
        spec=lambda w: as_json(SWEEPS[w.sweep]),
        study=f"{SWEEP_DIR}/study",
        train=lambda w, input: token_prefix(input.train),
        dev=lambda w, input: token_prefix(input.dev),
        suites=lambda w, input: flags("--blimp-suite", input.blimp_suite)
        + flags("--objective-suite", input.get("objective_suite")),
        teachers=lambda w, input: flags("--teacher", input.get("teachers", [])),
        cache=lambda w, input: flags("--cache", input.get("cache", [])),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.sweep.worker --spec {params.spec:q}"
        " --study-dir {params.study} --worker {wildcards.worker} --out {output}"
        " --train {params.train} --dev {params.dev} --tokenizer {input.tokenizer}"
        " {params.suites:q} {params.teachers:q} {params.cache:q} > {log} 2>&1"


rule sweep_results:
    """A sweep's trials table (every parameter, the objective, pruned or not), its
    parallel-coordinates figure and importances, and its best trial as a run's keys."""
    input:
        lambda w: expand(
            f"{R}/sweeps/{w.sweep}/workers/{{i}}.json", i=SWEEP_WORKERS[w.sweep]
        ),
    output:
        multiext(f"{SWEEP_DIR}/trials", ".csv", ".md", ".tex", ".html"),
        multiext(f"{SWEEP_DIR}/importances", ".csv", ".md", ".tex", ".html"),
        multiext(f"{SWEEP_DIR}/parallel_coordinates", ".png", ".pdf"),
        best=f"{SWEEP_DIR}/best.yaml",
        best_json=f"{SWEEP_DIR}/best.json",
    log:
        f"{LOGS}/sweep_results/{{sweep}}.log",
    benchmark:
        f"{BENCH}/sweep_results/{{sweep}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **job_resources("sweep_results"),
    params:
        spec=lambda w: as_json(SWEEPS[w.sweep]),
        study=f"{SWEEP_DIR}/study",
        out=SWEEP_DIR,
    shell:
        "python -m babydistill.sweep.results --spec {params.spec:q} --study-dir {params.study}"
        " --out-dir {params.out} > {log} 2>&1"


rule sweep_best:
    """A sweep's best trial retrained as a run (sweep:<name>:best), per seed of its base
    run: the base run's job spec with best.json's keys set (--sweep-best)."""
    input:
        unpack(sweep_best_inputs),
    output:
        directory(f"{R}/models/{one_of('name', SWEEP_BEST)}"),
    log:
        f"{LOGS}/sweep_best/{{name}}.log",
    benchmark:
        f"{BENCH}/sweep_best/{{name}}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        **job_resources("sweep_best"),
    params:
        stage=sweep_best_args,
        spec=lambda w: as_json(sweep_best_spec(w.name)),
        train=lambda w, input: token_prefix(input.train),
        dev=lambda w, input: token_prefix(input.dev),
        checkpoints=f"{R}/checkpoints/{{name}}",
        blimp=lambda w, input: flags("--blimp-suite", input.blimp_suite),
        at_words=AT_WORDS,
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.train.launch --gpus {resources.gpu}"
        " -- {params.stage:q} --spec {params.spec:q} --sweep-best {input.best}"
        " --train {params.train} --dev {params.dev} --tokenizer {input.tokenizer}"
        " --out {output} --checkpoint-dir {params.checkpoints} {params.blimp:q}"
        " --at-words {params.at_words:q} > {log} 2>&1"
