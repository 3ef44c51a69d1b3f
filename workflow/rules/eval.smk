# Evaluation: BLiMP-style zero-shot suites (lm-eval, offline) and fine-tuning.


rule download_suite:
    """Fetch a BLiMP-format suite (or copy a local directory / the demo world's suite)."""
    input:
        lambda w: demo_world_input(SUITES[w.suite]),
    output:
        directory(f"{R}/data/suites/{{suite}}"),
    log:
        f"{LOGS}/download_suite/{{suite}}.log",
    benchmark:
        f"{BENCH}/download_suite/{{suite}}.tsv"
    wildcard_constraints:
        suite=alternation(SUITES),
    conda:
        ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=30,
    params:
        location=lambda w: location_args(SUITES[w.suite], f"{R}/demo_world/blimp"),
    shell:
        "python -m babydistill.download suite {params.location:q} --out {output} > {log} 2>&1"


rule download_glue:
    """Fetch the fine-tuning data in glue_filtered layout (or the demo world's task)."""
    input:
        demo_world_input(FINETUNE),
    output:
        directory(f"{R}/data/glue"),
    log:
        f"{LOGS}/download_glue.log",
    benchmark:
        f"{BENCH}/download_glue.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=30,
    params:
        # a function: a brace in a path is text, not a wildcard
        location=lambda w: (
            location_args(FINETUNE, f"{R}/demo_world/glue") if TASKS else []
        ),
        msgs=lambda w: msgs_args(),
    shell:
        "python -m babydistill.download glue {params.location:q} {params.msgs:q} --out {output} > {log} 2>&1"


rule lm_eval_tasks:
    """The suite's lm-eval task YAMLs, kept per run with a RECIPE.md: the one lm_eval
    command that recomputes a score of the tables (data paths relative to the workdir).
    """
    input:
        suite=f"{R}/data/suites/{{suite}}",
    output:
        directory(f"{R}/lm_eval_tasks/{{suite}}"),
    log:
        f"{LOGS}/lm_eval_tasks/{{suite}}.log",
    benchmark:
        f"{BENCH}/lm_eval_tasks/{{suite}}.tsv"
    wildcard_constraints:
        suite=alternation(SUITES),
    conda:
        ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    params:
        limit=(
            f"--limit {EVAL['blimp']['limit']}"
            if EVAL.get("blimp", {}).get("limit")
            else ""
        ),
    shell:
        "python -m babydistill.lm_eval_tasks --suite-dir {input.suite} --suite {wildcards.suite}"
        " --out {output} {params.limit} > {log} 2>&1"


rule eval_blimp:
    """Zero-shot minimal pairs: the sentence with the higher log-likelihood wins."""
    input:
        model=f"{R}/models/{{model}}",
        suite=f"{R}/data/suites/{{suite}}",
        tasks=f"{R}/lm_eval_tasks/{{suite}}",
    output:
        scores=f"{R}/eval/blimp/{{suite}}/{{model}}.json",
        pairs=f"{R}/eval/blimp/{{suite}}/{{model}}.pairs.tsv",
    log:
        f"{LOGS}/eval_blimp/{{suite}}/{{model}}.log",
    benchmark:
        f"{BENCH}/eval_blimp/{{suite}}/{{model}}.tsv"
    wildcard_constraints:
        suite=alternation(SUITES),
        model=alternation(MODELS),
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    params:
        backend=EVAL.get("blimp", {}).get("backend", "lmeval"),
        batch_size=EVAL.get("blimp", {}).get("batch_size", 64),
        limit=(
            f"--limit {EVAL['blimp']['limit']}"
            if EVAL.get("blimp", {}).get("limit")
            else ""
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.eval_blimp --model {input.model} --suite-dir {input.suite}"
        " --suite {wildcards.suite} --out {output.scores} --pairs-out {output.pairs}"
        " --backend {params.backend} --batch-size {params.batch_size} {params.limit}"
        # no --trust-remote-code: ensembles load with babydistill's own classes
        " --tasks-dir {input.tasks} > {log} 2>&1"
        " && python -m babydistill.model_card --model-dir {input.model} >> {log} 2>&1"


rule finetune:
    """Fine-tune one model on one task; early stopping on the validation metric."""
    input:
        model=f"{R}/models/{{model}}",
        data=f"{R}/data/glue",
    output:
        f"{R}/eval/finetune/{{task}}/{{model}}.json",
    log:
        f"{LOGS}/finetune/{{task}}/{{model}}.log",
    benchmark:
        f"{BENCH}/finetune/{{task}}/{{model}}.tsv"
    wildcard_constraints:
        task=alternation(TASKS),
        model=alternation(FINETUNE_MODELS),
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=240,
    params:
        spec=lambda w: as_json(TASKS[w.task]),
        max_train=(
            f"--max-train {FINETUNE['max_train']}" if FINETUNE.get("max_train") else ""
        ),
        max_valid=(
            f"--max-valid {FINETUNE['max_valid']}" if FINETUNE.get("max_valid") else ""
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.finetune --model {input.model} --task {wildcards.task}"
        " --data-dir {input.data} --spec {params.spec:q} --out {output} {params.max_train}"
        " {params.max_valid}"
        " --threads {threads}"
        " > {log} 2>&1"
        " && python -m babydistill.model_card --model-dir {input.model} >> {log} 2>&1"
