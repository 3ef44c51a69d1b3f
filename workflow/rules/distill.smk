# Distillation variants (config distill:), cached teacher targets, and teacher ensembles.

# The teachers a variant runs live: none when it reads their cached targets instead.
LIVE_TEACHERS = {
    n: [] if bdconfig.cache_key(config, n) else teacher_dirs(n) for n in DISTILL
}


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
        teachers=lambda w, input: flags("--teacher", input.teachers),
        train=lambda w, input: token_prefix(input.train),
        seq_length=config["data"]["seq_length"],
        start_token=flags("--start-token", config["data"].get("start_token")),
        k=lambda w: CACHES[w.key]["k"],
        temperature=lambda w: CACHES[w.key]["temperature"],
        precision=lambda w: flags("--precision", CACHES[w.key]["precision"]),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.distill.teacher_cache {params.teachers:q}"
        " --train {params.train} --seq-length {params.seq_length} {params.start_token:q}"
        " --k {params.k} {params.precision:q}"
        " --temperature {params.temperature} --out {output} > {log} 2>&1"


rule distill:
    """Train one distillation variant (kd: Baby Llama, BabyLlama-2, Choosy Babies; wml)."""
    input:
        unpack(training_inputs("distill")),
    output:
        directory(f"{R}/models/{one_of('name', DISTILL_RUNS)}"),
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
        spec=lambda w: as_json(bdconfig.distill_spec(config, w.name)),
        train=lambda w, input: token_prefix(input.train),
        dev=lambda w, input: token_prefix(input.dev),
        checkpoints=f"{R}/checkpoints/{{name}}",
        blimp=lambda w, input: flags("--blimp-suite", input.blimp_suite),
        teachers=lambda w: flags("--teacher", LIVE_TEACHERS[w.name]),
        cache=lambda w, input: flags("--cache", input.cache),
        at_words=AT_WORDS,
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.train.launch --gpus {resources.gpu}"
        " -- babydistill.distill.student --spec {params.spec:q} --train {params.train}"
        " --dev {params.dev} --tokenizer {input.tokenizer} --out {output}"
        " --checkpoint-dir {params.checkpoints} {params.blimp:q} {params.teachers:q}"
        " {params.cache:q} --at-words {params.at_words:q} > {log} 2>&1"


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
        "python -m babydistill.distill.wml --run-dir {input} --peer {params.index}"
        " --out {output} > {log} 2>&1"


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
        members=lambda w, input: flags("--teacher", input),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.distill.ensemble {params.members:q}"
        " --out {output} > {log} 2>&1"
