# Distillation variants (config distill:), cached teacher targets, and teacher ensembles.


rule teacher_cache:
    """Run a set of teachers once over the fixed training chunks; keep top-k targets."""
    input:
        train=f"{R}/tokens/train.json",
        teachers=lambda w: CACHES[w.key]["teachers"],
    output:
        directory(f"{R}/teacher_cache/{{key}}"),
    log:
        f"{LOGS}/teacher_cache/{{key}}.log",
    benchmark:
        f"{BENCH}/teacher_cache/{{key}}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        **job_resources("teacher_cache"),
    params:
        args=teacher_cache_args,
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.distill.teacher_cache {params.args} --out {output} > {log} 2>&1"


rule distill:
    """Train one distillation variant (kd: Baby Llama, BabyLlama-2, Choosy Babies; wml)."""
    input:
        unpack(training_inputs("distill")),
    output:
        directory(f"{R}/models/{one_of('name', DISTILL)}"),
    log:
        f"{LOGS}/distill/{{name}}.log",
    benchmark:
        f"{BENCH}/distill/{{name}}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        **job_resources("distill"),
    params:
        args=training_args("distill"),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.train.launch --gpus {resources.gpu}"
        " -- babydistill.distill.student {params.args} > {log} 2>&1"


rule wml_peer:
    """One peer of a weighted-mutual-learning run as a model directory of its own."""
    input:
        lambda w: f"{R}/models/{WML_PEERS[w.peer][0]}",
    output:
        directory(f"{R}/models/{{peer}}"),
    log:
        f"{LOGS}/wml_peer/{{peer}}.log",
    benchmark:
        f"{BENCH}/wml_peer/{{peer}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **job_resources("wml_peer"),
    params:
        index=lambda w: WML_PEERS[w.peer][1],
    shell:
        "python -m babydistill.distill.wml --run-dir {input} --peer {params.index} --out {output} > {log} 2>&1"


rule ensemble:
    """The logit-averaged teacher ensemble, saved as a model the evaluation can load."""
    input:
        lambda w: [f"{R}/models/{m}" for m in bdconfig.ensemble_members(config, w.name)],
    output:
        directory(f"{R}/models/{one_of('name', ENSEMBLES)}"),
    log:
        f"{LOGS}/ensemble/{{name}}.log",
    benchmark:
        f"{BENCH}/ensemble/{{name}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        **job_resources("ensemble"),
    params:
        members=lambda w, input: " ".join(f"--teacher {m}" for m in input),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.distill.ensemble {params.members} --out {output} > {log} 2>&1"
