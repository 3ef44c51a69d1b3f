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
    wildcard_constraints:
        key=alternation(CACHES),
    conda:
        ENV
    threads: 2
    resources:
        gpu=1,
        mem_mb=lambda w: bdconfig.job_resources(
            config, "distill", CACHES[w.key]["user"]
        )["mem_mb"],
        runtime=lambda w: bdconfig.job_resources(
            config, "distill", CACHES[w.key]["user"]
        )["runtime"],
    params:
        teachers=lambda w: " ".join(f"--teacher {t}" for t in CACHES[w.key]["teachers"]),
        k=lambda w: CACHES[w.key]["k"],
        temperature=lambda w: CACHES[w.key]["temperature"],
        seq_length=config["data"]["seq_length"],
        train=lambda w, input: token_prefix(input.train),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.teacher_cache {params.teachers} --train {params.train}"
        " --seq-length {params.seq_length} --k {params.k} --temperature {params.temperature}"
        " --out {output} > {log} 2>&1"


rule distill:
    """Train one distillation variant (kd: Baby Llama, BabyLlama-2, Choosy Babies; wml)."""
    input:
        train=f"{R}/tokens/train.json",
        dev=f"{R}/tokens/{EVAL_SPLIT}.json",  # the eval-loss split
        tokenizer=f"{R}/tokenizer",
        # per-epoch BLiMP curves (training key blimp_every_epoch): the first suite
        blimp_suite=lambda w: blimp_curve_suite("distill", w.name),
        teachers=lambda w: teacher_dirs(w.name),
        cache=lambda w: cache_dirs(w.name),
    output:
        directory(f"{R}/models/{{name}}"),
    log:
        f"{LOGS}/distill/{{name}}.log",
    benchmark:
        f"{BENCH}/distill/{{name}}.tsv"
    wildcard_constraints:
        name=alternation(DISTILL),
    conda:
        ENV
    threads: 2
    resources:
        gpu=lambda w: bdconfig.gpus(config, "distill", w.name),
        mem_mb=lambda w: bdconfig.job_resources(config, "distill", w.name)["mem_mb"],
        runtime=lambda w: bdconfig.job_resources(config, "distill", w.name)["runtime"],
    params:
        spec=lambda w: as_json(bdconfig.distill_spec(config, w.name)),
        checkpoints=lambda w: f"{R}/checkpoints/{w.name}",
        train=lambda w, input: token_prefix(input.train),
        dev=lambda w, input: token_prefix(input.dev),
        blimp=lambda w: " ".join(
            f"--blimp-suite {d}" for d in blimp_curve_suite("distill", w.name)
        ),
        # cached targets replace the live teachers
        teachers=lambda w: (
            ""
            if cache_dirs(w.name)
            else " ".join(f"--teacher {t}" for t in teacher_dirs(w.name))
        ),
        cache=lambda w: " ".join(f"--cache {c}" for c in cache_dirs(w.name)),
        teacher_provenance=lambda w: " ".join(
            f"--input {t}/provenance.json" for t in teacher_dirs(w.name)
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.launch --gpus {resources.gpu} -- babydistill.distill"
        " --spec {params.spec:q} --train {params.train} --dev {params.dev}"
        " --tokenizer {input.tokenizer} --out {output} --checkpoint-dir {params.checkpoints}"
        " {params.blimp}"
        " {params.teachers} {params.cache} > {log} 2>&1"
        " && python -m babydistill.provenance --model-dir {output} --spec {params.spec:q}"
        " --input {input.train} --input {input.dev} --input {input.tokenizer}"
        " {params.teacher_provenance} >> {log} 2>&1"
        " && python -m babydistill.model_card --model-dir {output} >> {log} 2>&1"


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
    wildcard_constraints:
        peer=alternation(WML_PEERS),
    conda:
        ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    params:
        index=lambda w: WML_PEERS[w.peer][1],
    shell:
        "python -m babydistill.wml --run-dir {input} --peer {params.index} --out {output} > {log} 2>&1"


rule ensemble:
    """The logit-averaged teacher ensemble, saved as a model the evaluation can load."""
    input:
        lambda w: [f"{R}/models/{m}" for m in bdconfig.ensemble_members(config, w.name)],
    output:
        directory(f"{R}/models/{{name}}"),
    log:
        f"{LOGS}/ensemble/{{name}}.log",
    benchmark:
        f"{BENCH}/ensemble/{{name}}.tsv"
    wildcard_constraints:
        name=alternation(ENSEMBLES),
    conda:
        ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=10,
    params:
        members=lambda w, input: " ".join(f"--teacher {m}" for m in input),
        member_provenance=lambda w, input: " ".join(
            f"--input {m}/provenance.json" for m in input
        ),
    shell:
        "OMP_NUM_THREADS={threads} python -m babydistill.ensemble {params.members} --out {output} > {log} 2>&1"
        " && python -m babydistill.provenance --model-dir {output} {params.member_provenance}"
        " >> {log} 2>&1"
        " && python -m babydistill.model_card --model-dir {output} >> {log} 2>&1"
