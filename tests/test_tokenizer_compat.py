"""A model folder's tokenizer loads in every transformers the README claims and gives the same
ids as ours on real BLiMP sentences: the lower boundary, 4.40.2 (tokenizers 0.19, which
refuses merges stored as pairs), and 4.51.3 (what the BabyLM 2025 evaluation pipeline pins);
the upper end is the transformers 5 this project runs on.

A throw-away venv per version (no torch: tokenizers and transformers only) is built once and
kept in pytest's cache directory (``.pytest_cache``), so later runs reuse it; the test skips
with the reason when pip cannot reach the package registry.
"""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

from babydistill.data import tokenizer as T
OLD_TRANSFORMERS = ["4.40.2", "4.51.3"]  # the claimed lower boundary; the 2025 pipeline's pin

# Runs inside the old venv: loads the folder with AutoTokenizer and encodes as lm-eval does.
ENCODE = r"""
import json, sys, transformers
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
sentences = json.load(open(sys.argv[2]))
json.dump({
    "version": transformers.__version__,
    "class": type(tok).__name__,
    "model_max_length": tok.model_max_length,
    "special": [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id],
    "plain": tok(sentences)["input_ids"],
    "lm_eval": [tok.encode(" " + s, add_special_tokens=False) for s in sentences],
    "decoded": [tok.decode(tok(s)["input_ids"]) for s in sentences[:50]],
}, open(sys.argv[3], "w"))
"""


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module", params=OLD_TRANSFORMERS)
def old_transformers_python(request, tmp_path_factory) -> Path:
    """A venv with that transformers and its tokenizers pin, built once and cached (in
    pytest's cache; in a temp dir when the cache plugin is off, ``-p no:cacheprovider``)."""
    version = request.param
    name = f"venv-transformers-{version}"
    cache = getattr(request.config, "cache", None)
    root = Path(cache.mkdir(name)) if cache is not None else tmp_path_factory.mktemp(name)
    python = root / "bin" / "python"
    done = root / "installed.ok"
    if done.is_file() and python.is_file():
        return python, version
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    res = _pip(python, "install", "--quiet", f"transformers=={version}")
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["(no output)"]
        reachable = _pip(python, "download", "--no-deps", "--quiet", "-d", str(root / "probe"),
                         "packaging").returncode == 0
        if not reachable:
            pytest.skip(f"pip cannot reach the package registry to install transformers=={version}: {tail[0]}")
        pytest.fail(f"pip install transformers=={version} failed: {res.stderr[-2000:]}")
    done.write_text("ok\n")
    return python, version


@pytest.fixture(scope="module")
def blimp_sentences(shared_subdir) -> list[str]:
    """Both sentences of the first 10 pairs of every real BLiMP paradigm."""
    sentences = []
    for path in sorted(shared_subdir("blimp").glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for _, line in zip(range(10), f):
                rec = json.loads(line)
                sentences += [rec["sentence_good"], rec["sentence_bad"]]
    assert len(sentences) > 1000
    return sentences


@pytest.fixture(scope="module")
def model_tokenizer_dir(shared_subdir, tmp_path_factory) -> Path:
    """A tokenizer trained on real BabyLM text, copied into a (config-only) model dir."""
    corpus = shared_subdir("babylm_2023_partial")
    tok = T.train_tokenizer(sorted(corpus.glob("*/switchboard.train")), vocab_size=4000)
    tok_dir = T.save_tokenizer(tok, tmp_path_factory.mktemp("tok") / "tokenizer")
    model_dir = tmp_path_factory.mktemp("model")
    (model_dir / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 256}))
    T.copy_for_model(tok_dir, model_dir)
    return model_dir


@pytest.mark.slow
def test_older_transformers_give_our_ids_on_blimp(old_transformers_python, blimp_sentences,
                                                  model_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    script, sent_file, out_file = tmp_path / "encode.py", tmp_path / "sentences.json", tmp_path / "ids.json"
    script.write_text(ENCODE)
    sent_file.write_text(json.dumps(blimp_sentences))
    python, version = old_transformers_python
    res = subprocess.run([str(python), str(script), str(model_tokenizer_dir), str(sent_file),
                          str(out_file)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    old = json.loads(out_file.read_text())
    assert old["version"] == version and old["class"] == "PreTrainedTokenizerFast"

    ours = AutoTokenizer.from_pretrained(str(model_tokenizer_dir))
    backend = T.load_backend(model_tokenizer_dir)
    plain = ours(blimp_sentences)["input_ids"]
    assert plain == [e.ids for e in backend.encode_batch(blimp_sentences)]
    assert old["plain"] == plain  # same ids, no BOS/EOS added, the first word with its prefix space
    assert old["lm_eval"] == [ours.encode(" " + s, add_special_tokens=False) for s in blimp_sentences]
    assert old["special"] == [0, 1, 2]
    assert old["model_max_length"] == ours.model_max_length == 256
    assert old["decoded"] == [ours.decode(ids) for ids in plain[:50]]
    first = ours.convert_ids_to_tokens(plain[0])[0]
    assert first.startswith("Ġ"), first
