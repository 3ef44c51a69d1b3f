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
    conda:
        ENV
    resources:
        **job_resources("download_suite"),
    params:
        location=lambda w: location_args(SUITES[w.suite], f"{R}/demo_world/blimp"),
    shell:
        "python -m babydistill.data.download suite {params.location:q} --out {output} > {log} 2>&1"


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
    resources:
        **job_resources("download_glue"),
    params:
        location=glue_location,
        msgs=lambda w: msgs_args(),
    shell:
        "python -m babydistill.data.download glue {params.location:q} {params.msgs:q} --out {output} > {log} 2>&1"


rule lm_eval_tasks:
    """The suite's lm-eval task YAMLs, kept per run with a RECIPE.md: the one lm_eval
    command that recomputes a score of the tables (paths relative to the workdir)."""
    input:
        suite=f"{R}/data/suites/{{suite}}",
    output:
        directory(f"{R}/lm_eval_tasks/{{suite}}"),
    log:
        f"{LOGS}/lm_eval_tasks/{{suite}}.log",
    benchmark:
        f"{BENCH}/lm_eval_tasks/{{suite}}.tsv"
    conda:
        ENV
    resources:
        **job_resources("lm_eval_tasks"),
    params:
        limit=BLIMP_LIMIT,
    shell:
        "python -m babydistill.eval.lm_eval_tasks --suite-dir {input.suite} --suite {wildcards.suite}"
        " --out {output} {params.limit} > {log} 2>&1"


rule eval_blimp:
    """Zero-shot minimal pairs: the sentence with the higher log-likelihood wins."""
    input:
        unpack(eval_blimp_inputs),
    output:
        scores=f"{R}/eval/blimp/{{suite}}/{{model}}.json",
        pairs=f"{R}/eval/blimp/{{suite}}/{{model}}.pairs.tsv",
    log:
        f"{LOGS}/eval_blimp/{{suite}}/{{model}}.log",
    benchmark:
        f"{BENCH}/eval_blimp/{{suite}}/{{model}}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        **job_resources("eval_blimp"),
    params:
        args=eval_blimp_args,
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.eval.blimp --model {input.model} {params.args} > {log} 2>&1"


rule finetune:
    """Fine-tune one model on one task; early stopping on the validation metric."""
    input:
        model=f"{R}/models/{{model}}",
        data=f"{R}/data/glue",
    output:
        f"{R}/eval/finetune/{{task}}/{one_of('model', FINETUNE_MODELS)}.json",
    log:
        f"{LOGS}/finetune/{{task}}/{{model}}.log",
    benchmark:
        f"{BENCH}/finetune/{{task}}/{{model}}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        **job_resources("finetune"),
    params:
        args=finetune_args,
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.eval.finetune {params.args} --threads {threads} > {log} 2>&1"
