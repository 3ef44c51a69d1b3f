# Data stages: demo world -> corpus -> per-source cleaning -> BPE tokenizer -> token arrays.
# (No functions beside the rules, as Snakemake's lint asks: the shared ones are in common.smk.)

import os

SPLITS = ["train", "dev"]
SPLIT_DIR = {"train": CORPUS["train_split"], "dev": CORPUS["dev_split"]}
# The raw corpus folders (train and dev splits) and the cleaned files' pattern.
RAW = [f"{R}/corpus/raw/{CORPUS[s]}" for s in ("train_split", "dev_split")]
CLEAN = f"{R}/corpus/clean/{{split}}/{{source}}"
DEMO_WORLD = bdconfig.section(config, "demo_world")
TOKENIZER = bdconfig.section(config, "tokenizer")
# data.max_train_tokens: a smoke run's short training split
MAX_TRAIN_TOKENS = config["data"].get("max_train_tokens")
# The cleaned files a token split is made of (train = the fit part with a selection).
SPLIT_TEXTS = {
    split: expand(f"{R}/corpus/clean/{folder}/{{source}}.txt", source=SOURCES)
    for split, folder in [
        ("train", "fit" if SELECT_FRACTION else "train"),
        ("dev", "dev"),
        ("select", "select"),
    ]
}


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
        seed=DEMO_WORLD["seed"],
        words=DEMO_WORLD["words"],
        pairs=DEMO_WORLD["pairs_per_paradigm"],
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
        layout=CORPUS["layout"],
        # a function: a brace in a config path is text, not a wildcard
        location=lambda w: location_args(CORPUS, f"{R}/demo_world/corpus"),
        out=lambda w, output: os.path.dirname(os.path.dirname(output[0])),  # corpus/raw
        train_split=CORPUS["train_split"],
        dev_split=CORPUS["dev_split"],
        sources=",".join(SOURCES),
    shell:
        "python -m babydistill.data.download corpus --layout {params.layout}"
        " {params.location:q} --out {params.out} --train-split {params.train_split}"
        " --dev-split {params.dev_split} --sources {params.sources} > {log} 2>&1"


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
        vocab_size=TOKENIZER["vocab_size"],
        min_frequency=TOKENIZER["min_frequency"],
    shell:
        "python -m babydistill.data.tokenizer --vocab-size {params.vocab_size}"
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
        tokenizer=f"{R}/tokenizer",
        texts=lambda w: SPLIT_TEXTS[w.split],
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
        out=lambda w, output: token_prefix(output.meta),
        max_tokens=lambda w: flags(
            "--max-tokens", MAX_TRAIN_TOKENS if w.split == "train" else None
        ),
    shell:
        "python -m babydistill.data.tokenize_split --tokenizer {input.tokenizer} --out {params.out}"
        " {params.max_tokens:q} {input.texts} > {log} 2>&1"
