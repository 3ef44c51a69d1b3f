# Evaluation: BLiMP-style zero-shot suites (lm-eval, offline) and fine-tuning.

BLIMP = bdconfig.section(config, "eval", "blimp")


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
        # functions: a brace in a config path is text, not a wildcard
        location=lambda w: location_args(FINETUNE, f"{R}/demo_world/glue"),
        msgs=lambda w: msgs_args(FINETUNE.get("msgs") or {}),
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
        limit=flags("--limit", BLIMP.get("limit")),
    shell:
        "python -m babydistill.eval.lm_eval_tasks --suite-dir {input.suite}"
        " --suite {wildcards.suite} --out {output} {params.limit:q} > {log} 2>&1"


# Each suite's scoring convention and temperature scan (eval.blimp, per suite over it).
# eval_blimp passes no --trust-remote-code: ensembles load with babydistill's own classes.
SCORING = {suite: bdconfig.blimp_scoring(config, suite) for suite in SUITES}


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
    conda:
        ENV
    threads: 2
    resources:
        **job_resources("eval_blimp"),
    params:
        backend=BLIMP["backend"],
        batch_size=BLIMP["batch_size"],
        limit=flags("--limit", BLIMP.get("limit")),
        convention=lambda w: SCORING[w.suite][0],
        temperatures=lambda w: flags("--temperatures", SCORING[w.suite][1]),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.eval.blimp --model {input.model}"
        " --suite-dir {input.suite} --suite {wildcards.suite} --out {output.scores}"
        " --pairs-out {output.pairs} --backend {params.backend} --batch-size {params.batch_size}"
        " {params.limit:q} --tasks-dir {input.tasks} --convention {params.convention}"
        " {params.temperatures:q} > {log} 2>&1"


# A suite scored the way a paper table's pipeline scores it (PAPER_SCORINGS), when that is
# not the suite's own convention: the same job, its files one folder down.
use rule eval_blimp as eval_blimp_paper with:
    output:
        scores=f"{R}/eval/blimp/{{suite}}/{{convention}}/{{model}}.json",
        pairs=f"{R}/eval/blimp/{{suite}}/{{convention}}/{{model}}.pairs.tsv",
    log:
        f"{LOGS}/eval_blimp/{{suite}}/{{convention}}/{{model}}.log",
    benchmark:
        f"{BENCH}/eval_blimp/{{suite}}/{{convention}}/{{model}}.tsv"
    params:
        backend=BLIMP["backend"],
        batch_size=BLIMP["batch_size"],
        limit=flags("--limit", BLIMP.get("limit")),
        convention=lambda w: w.convention,
        temperatures=[],


# The fast evaluation of every checkpoint (eval.revisions): each suite's fast subset, the
# first N pairs per paradigm (eval.revisions.limit, else its official dataset's fast size)
REVISIONS = bdconfig.section(config, "eval", "revisions")
FAST_LIMITS = [f"{s}={bdconfig.challenge.fast_limit(config, s)}" for s in SUITES]


rule eval_revisions:
    """A trained model's revisions/chck_<N> and its final weights (main) on the fast subsets."""
    input:
        model=f"{R}/models/{{model}}",
        suites=expand(f"{R}/data/suites/{{suite}}", suite=SUITES),
    output:
        f"{R}/eval/revisions/{one_of('model', TRAINED)}.json",
    log:
        f"{LOGS}/eval_revisions/{{model}}.log",
    benchmark:
        f"{BENCH}/eval_revisions/{{model}}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        **job_resources("eval_revisions"),
    params:
        suites=[f"{s}={R}/data/suites/{s}" for s in SUITES],
        limits=FAST_LIMITS,
        convention=REVISIONS["convention"],
        batch_size=BLIMP["batch_size"],
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.eval.revisions --model {input.model}"
        " --suite {params.suites:q} --limit {params.limits:q} --convention {params.convention}"
        " --batch-size {params.batch_size} --out {output} > {log} 2>&1"


# --spec carries eval.finetune.recipe: a babylm-2025 spec has "recipe" (common.smk's TASKS,
# from babydistill.config.finetune_recipes); a babylm-2023 spec is the config's task object.
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
        spec=lambda w: as_json(TASKS[w.task]),
        max_train=flags("--max-train", FINETUNE.get("max_train")),
        max_valid=flags("--max-valid", FINETUNE.get("max_valid")),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.eval.finetune --model {input.model}"
        " --task {wildcards.task} --data-dir {input.data} --spec {params.spec:q} --out {output}"
        " {params.max_train:q} {params.max_valid:q} --threads {threads} > {log} 2>&1"
