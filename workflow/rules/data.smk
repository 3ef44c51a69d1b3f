# Data stages: demo world -> corpus -> per-source cleaning -> BPE tokenizer -> token arrays.


rule demo_world:
    """Write the synthetic demo world: corpus, BLiMP-format suite, CoLA-style task."""
    output:
        directory(f"{R}/demo_world"),
    log:
        f"{LOGS}/demo_world.log",
    benchmark:
        f"{BENCH}/demo_world.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=1000,
        runtime=10,
    params:
        seed=config.get("demo_world", {}).get("seed", 1234),
        words=config.get("demo_world", {}).get("words", 300000),
        pairs=config.get("demo_world", {}).get("pairs_per_paradigm", 200),
    shell:
        "python -m babydistill.demo_world --out {output} --seed {params.seed}"
        " --words {params.words} --pairs {params.pairs} > {log} 2>&1"


rule download_corpus:
    """Fetch the BabyLM release (or copy a local directory / the demo world's corpus)."""
    input:
        [f"{R}/demo_world"] if CORPUS.get("demo_world") else [],
    output:
        expand(
            f"{R}/corpus/raw/{CORPUS['train_split']}/{{source}}.train", source=SOURCES
        ),
        expand(f"{R}/corpus/raw/{CORPUS['dev_split']}/{{source}}.dev", source=SOURCES),
    log:
        f"{LOGS}/download_corpus.log",
    benchmark:
        f"{BENCH}/download_corpus.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=60,
    params:
        # a function: a brace in a path is text, not a wildcard
        location=lambda w: location_args(CORPUS, f"{R}/demo_world/corpus"),
        sources=",".join(SOURCES),
        layout=CORPUS["layout"],
        train_split=CORPUS["train_split"],
        dev_split=CORPUS["dev_split"],
        out=lambda w, output: os.path.dirname(os.path.dirname(output[0])),
    shell:
        "python -m babydistill.download corpus --layout {params.layout} {params.location:q}"
        " --out {params.out} --train-split {params.train_split} --dev-split {params.dev_split}"
        " --sources {params.sources} > {log} 2>&1"


rule clean_source:
    """Clean one source file of one split (mrclean-style; config clean.mode)."""
    input:
        lambda w: f"{R}/corpus/raw/{SPLIT_DIR[w.split]}/{w.source}.{w.split}",
    output:
        text=f"{R}/corpus/clean/{{split}}/{{source}}.txt",
        stats=f"{R}/corpus/clean/{{split}}/{{source}}.stats.tsv",
    log:
        f"{LOGS}/clean_source/{{split}}/{{source}}.log",
    benchmark:
        f"{BENCH}/clean_source/{{split}}/{{source}}.tsv"
    wildcard_constraints:
        split="train|dev",
        source=alternation(SOURCES),
    conda:
        ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=20,
    params:
        mode=config["clean"]["mode"],
    shell:
        "python -m babydistill.clean --source {wildcards.source} --mode {params.mode}"
        " --stats {output.stats} {input} {output.text} > {log} 2>&1"


rule clean_stats:
    """One table of lines/words/characters before and after cleaning and the readability
    metrics (Baby Llama's curriculum), per source and split."""
    input:
        stats=expand(
            f"{R}/corpus/clean/{{split}}/{{source}}.stats.tsv",
            split=SPLITS,
            source=SOURCES,
        ),
        texts=expand(
            f"{R}/corpus/clean/{{split}}/{{source}}.txt", split=SPLITS, source=SOURCES
        ),
    output:
        report(
            f"{R}/corpus/clean_stats.tsv",
            caption="../report/clean_stats.rst",
            category="Corpus",
        ),
    log:
        f"{LOGS}/clean_stats.log",
    benchmark:
        f"{BENCH}/clean_stats.tsv"
    conda:
        ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m babydistill.clean_stats --out {output} --stats {input.stats}"
        " --texts {input.texts} > {log} 2>&1"


rule train_tokenizer:
    """Byte-level BPE on the cleaned train split only (never dev)."""
    input:
        expand(f"{R}/corpus/clean/train/{{source}}.txt", source=SOURCES),
    output:
        directory(f"{R}/tokenizer"),
    log:
        f"{LOGS}/train_tokenizer.log",
    benchmark:
        f"{BENCH}/train_tokenizer.tsv"
    conda:
        ENV
    threads: 2
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=30,
    params:
        vocab_size=config["tokenizer"]["vocab_size"],
        min_frequency=config["tokenizer"].get("min_frequency", 2),
    shell:
        "python -m babydistill.tokenizer --vocab-size {params.vocab_size}"
        " --min-frequency {params.min_frequency} --out {output} {input} > {log} 2>&1"


rule select_split:
    """BabyLlama-2: cut a cleaned train file by lines into train and selection parts."""
    input:
        f"{R}/corpus/clean/train/{{source}}.txt",
    output:
        train=f"{R}/corpus/clean/fit/{{source}}.txt",
        select=f"{R}/corpus/clean/select/{{source}}.txt",
    log:
        f"{LOGS}/select_split/{{source}}.log",
    benchmark:
        f"{BENCH}/select_split/{{source}}.tsv"
    wildcard_constraints:
        source=alternation(SOURCES),
    conda:
        ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=2000,
        runtime=10,
    params:
        fraction=SELECT_FRACTION,
    shell:
        "python -m babydistill.select_split --fraction {params.fraction}"
        " {input} {output.train} {output.select} > {log} 2>&1"


rule tokenize_split:
    """Tokenize a split once into a flat, memory-mapped token array."""
    input:
        tokenizer=f"{R}/tokenizer",
        texts=split_texts,
    output:
        tokens=f"{R}/tokens/{{split}}.bin",
        meta=f"{R}/tokens/{{split}}.json",
    log:
        f"{LOGS}/tokenize_split/{{split}}.log",
    benchmark:
        f"{BENCH}/tokenize_split/{{split}}.tsv"
    wildcard_constraints:
        split="train|dev|select",
    conda:
        ENV
    threads: 2
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=30,
    params:
        prefix=lambda w, output: output.meta.removesuffix(".json"),
        # data.max_train_tokens: a smoke run's short training split
        max_tokens=lambda w: (
            f"--max-tokens {config['data']['max_train_tokens']}"
            if w.split == "train" and config["data"].get("max_train_tokens")
            else ""
        ),
    shell:
        "python -m babydistill.tokenize_split --tokenizer {input.tokenizer}"
        " --out {params.prefix} {params.max_tokens} {input.texts} > {log} 2>&1"
