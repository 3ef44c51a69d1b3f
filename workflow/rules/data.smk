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
    resources:
        **job_resources("demo_world"),
    params:
        seed=config.get("demo_world", {}).get("seed", 1234),
        words=config.get("demo_world", {}).get("words", 300000),
        pairs=config.get("demo_world", {}).get("pairs_per_paradigm", 200),
    shell:
        "python -m babydistill.data.demo_world --out {output} --seed {params.seed}"
        " --words {params.words} --pairs {params.pairs} > {log} 2>&1"


rule download_corpus:
    """Fetch the BabyLM release (or copy a local directory / the demo world's corpus)."""
    input:
        demo_world_input(CORPUS),
    output:
        expand(f"{RAW[0]}/{{source}}.train", source=SOURCES),
        expand(f"{RAW[1]}/{{source}}.dev", source=SOURCES),
    log:
        f"{LOGS}/download_corpus.log",
    benchmark:
        f"{BENCH}/download_corpus.tsv"
    conda:
        ENV
    resources:
        **job_resources("download_corpus"),
    params:
        args=download_corpus_args,
    shell:
        "python -m babydistill.data.download corpus {params.args} > {log} 2>&1"


rule clean_source:
    """Clean one source file of one split (mrclean-style; config clean.mode)."""
    input:
        lambda w: f"{R}/corpus/raw/{SPLIT_DIR[w.split]}/{w.source}.{w.split}",
    output:
        text=f"{R}/corpus/clean/{one_of('split', SPLITS)}/{{source}}.txt",
        stats=f"{R}/corpus/clean/{one_of('split', SPLITS)}/{{source}}.stats.tsv",
    log:
        f"{LOGS}/clean_source/{{split}}/{{source}}.log",
    benchmark:
        f"{BENCH}/clean_source/{{split}}/{{source}}.tsv"
    conda:
        ENV
    resources:
        **job_resources("clean_source"),
    params:
        mode=config["clean"]["mode"],
    shell:
        "python -m babydistill.data.clean --source {wildcards.source} --mode {params.mode}"
        " --stats {output.stats} {input} {output.text} > {log} 2>&1"


rule clean_stats:
    """One table of lines/words/characters before and after cleaning and the readability
    metrics (Baby Llama's curriculum), per source and split."""
    input:
        stats=expand(f"{CLEAN}.stats.tsv", split=SPLITS, source=SOURCES),
        texts=expand(f"{CLEAN}.txt", split=SPLITS, source=SOURCES),
    output:
        report(f"{R}/corpus/clean_stats.tsv", **REPORT["clean_stats"]),
    log:
        f"{LOGS}/clean_stats.log",
    benchmark:
        f"{BENCH}/clean_stats.tsv"
    conda:
        ENV
    resources:
        **job_resources("clean_stats"),
    shell:
        "python -m babydistill.data.clean_stats --out {output} --stats {input.stats}"
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
        **job_resources("train_tokenizer"),
    params:
        args=TOKENIZER_ARGS,
    shell:
        "python -m babydistill.data.tokenizer {params.args} --out {output} {input} > {log} 2>&1"


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
    conda:
        ENV
    resources:
        **job_resources("select_split"),
    params:
        fraction=SELECT_FRACTION,
    shell:
        "python -m babydistill.data.select_split --fraction {params.fraction}"
        " {input} {output.train} {output.select} > {log} 2>&1"


rule tokenize_split:
    """Tokenize a split once into a flat, memory-mapped token array."""
    input:
        unpack(tokenize_inputs),
    output:
        tokens=f"{R}/tokens/{{split}}.bin",
        meta=f"{R}/tokens/{{split}}.json",
    log:
        f"{LOGS}/tokenize_split/{{split}}.log",
    benchmark:
        f"{BENCH}/tokenize_split/{{split}}.tsv"
    conda:
        ENV
    threads: 2
    resources:
        **job_resources("tokenize_split"),
    params:
        args=tokenize_args,  # --tokenizer DIR --out PREFIX [--max-tokens N]
    shell:
        "python -m babydistill.data.tokenize_split {params.args} {input.texts} > {log} 2>&1"
