"""BLiMP through lm-eval 0.4.13 offline: the generated task YAMLs read the local files,
lm-eval's per-pair log-likelihoods and decisions equal a plain-transformers reference and
our fast scorer on real BLiMP, blimp_filtered and the (multi-line) supplement, the JSON
and TSV agree, and bad input ends in one line.
"""

from __future__ import annotations

import json
import re
import os
import time

import pytest
import torch
import yaml

from babydistill.eval import blimp as eval_blimp
from babydistill.eval.scorer import load_suite, score_suite, summarize
from test_scorer import (  # noqa: F401  (fixtures shared with test_scorer)
    blimp_slice, check_known_outputs, make_known_suite, read_tsv, slice_suite, tiny_gpt2, tiny_llama)

torch.set_num_threads(1)
needs_accelerate = pytest.mark.skipif(
    __import__("importlib").util.find_spec("accelerate") is None,
    reason="lm-eval's hf model needs the accelerate package")

# (shared data dir, paradigms (None: all files), pairs per paradigm)
SLICES = {
    "blimp": ("blimp", ["adjunct_island", "determiner_noun_agreement_1", "wh_vs_that_with_gap"], 50),
    "blimp_filtered": ("babylm_eval_2024/blimp_filtered",
                       ["anaphor_number_agreement", "principle_A_c_command"], 40),
    "supplement": ("babylm_eval_2024/supplement_filtered", None, 15),
}


def test_task_yamls_read_local_files_offline(shared_subdir, tmp_path):
    src = shared_subdir("babylm_eval_2024/supplement_filtered")
    suite = slice_suite(tmp_path / "supp", src, ["turn_taking", "qa_congruence_easy"], 6)
    paradigms = load_suite(suite)
    work = tmp_path / "work"
    group, names = eval_blimp.write_tasks("supplement", paradigms, work)
    cfg = yaml.safe_load((work / "tasks" / f"{next(iter(names))}.yaml").read_text())
    assert cfg["dataset_path"] == "json" and cfg["test_split"] == "train"
    assert os.path.isabs(cfg["dataset_kwargs"]["data_files"]["train"])
    assert str(work) in cfg["dataset_kwargs"]["cache_dir"]

    from lm_eval.tasks import TaskManager, get_task_dict

    tasks = {}

    def collect(d):
        for k, v in d.items():
            collect(v) if isinstance(v, dict) else tasks.__setitem__(getattr(k, "group", k), v)
    with eval_blimp.offline_env(work):
        collect(get_task_dict([group], TaskManager(include_path=str(work / "tasks"), include_defaults=False)))
    assert os.environ.get("HF_HOME") != str((work / "hf_home").resolve())  # restored
    assert set(tasks) == set(names)
    for name, task in tasks.items():
        par = next(p for p in paradigms if p.name == names[name])
        docs = list(task.test_docs())
        # the multi-line dialogues survive the YAML -> datasets -> lm-eval round trip
        assert [(d["sentence_good"], d["sentence_bad"]) for d in docs] == [(p.good, p.bad) for p in par.pairs]
        assert task.doc_to_choice(docs[0]) == [par.pairs[0].good, par.pairs[0].bad]
    assert any("\n" in p.good for p in paradigms[1].pairs + paradigms[0].pairs)


@needs_accelerate
@pytest.mark.parametrize("suite", list(SLICES))
def test_lmeval_equals_reference_and_fast(suite, shared_subdir, tiny_llama, tmp_path):
    sub, names, n = SLICES[suite]
    src = shared_subdir(sub)
    names = names or sorted(p.stem for p in src.glob("*.jsonl"))
    paradigms = load_suite(slice_suite(tmp_path / suite, src, names, n))
    pairs = [p for par in paradigms for p in par.pairs]
    lm_good, lm_bad = eval_blimp.run_lmeval(tiny_llama, suite, paradigms, tmp_path / "work", batch_size=32)
    ref_good, ref_bad = eval_blimp.independent_loglik(tiny_llama, pairs)
    model, tok = eval_blimp.load_model(tiny_llama)
    fast_summary, fast_rows = score_suite(model, tok, paradigms, batch_size=32)
    assert max(abs(a - b) for a, b in zip(lm_good + lm_bad, ref_good + ref_bad)) < 1e-4
    lm_dec = [g >= b for g, b in zip(lm_good, lm_bad)]
    assert lm_dec == [g >= b for g, b in zip(ref_good, ref_bad)]  # every pair
    assert lm_dec == [bool(r[4]) for r in fast_rows]
    assert max(abs(r[2] - g) + abs(r[3] - b) for r, g, b in zip(fast_rows, lm_good, lm_bad)) < 1e-4
    assert summarize(paradigms, lm_good, lm_bad)[0] == fast_summary


@needs_accelerate
def test_lmeval_cli_known_suite(tiny_llama, tmp_path):
    suite, expected = make_known_suite(tmp_path / "suite")
    work = tmp_path / "work"
    eval_blimp.main(["--model", str(tiny_llama), "--suite-dir", str(suite), "--suite", "known",
                     "--out", str(tmp_path / "r.json"), "--pairs-out", str(tmp_path / "p.tsv"),
                     "--work-dir", str(work), "--trust-remote-code"])
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["backend"] == "lmeval" and saved["model"] == tiny_llama.name
    assert saved["model_dir"] == str(tiny_llama)
    check_known_outputs(saved, read_tsv(tmp_path / "p.tsv"), expected)
    assert (work / "hf_home" / "datasets").is_dir()  # the datasets cache stayed inside the job


def test_missing_suite_dir_is_one_line(tiny_llama, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        eval_blimp.main(["--model", str(tiny_llama), "--suite-dir", str(tmp_path / "nope"), "--suite", "x",
                         "--out", str(tmp_path / "r.json"), "--pairs-out", str(tmp_path / "p.tsv")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nope" in err and "\n" not in err
    assert not (tmp_path / "r.json").exists()


def test_bad_model_dir_is_one_line(tmp_path, capsys):
    suite, _ = make_known_suite(tmp_path / "suite")
    with pytest.raises(SystemExit):
        eval_blimp.main(["--model", str(tmp_path / "nomodel"), "--suite-dir", str(suite), "--suite", "x",
                         "--out", str(tmp_path / "r.json"), "--pairs-out", str(tmp_path / "p.tsv"),
                         "--backend", "fast"])
    assert "config.json" in capsys.readouterr().err


@pytest.mark.slow
@needs_accelerate
def test_full_blimp_lmeval_equals_reference(shared_subdir, tiny_llama, tmp_path):
    """All 67,000 pairs of BLiMP: lm-eval's decision == the independent decision, every pair."""
    paradigms = load_suite(shared_subdir("blimp"))
    pairs = [p for par in paradigms for p in par.pairs]
    t0 = time.time()
    lm_good, lm_bad = eval_blimp.run_lmeval(tiny_llama, "blimp", paradigms, tmp_path / "work", batch_size=128)
    t1 = time.time()
    ref_good, ref_bad = eval_blimp.independent_loglik(tiny_llama, pairs)
    t2 = time.time()
    model, tok = eval_blimp.load_model(tiny_llama)
    _, fast_rows = score_suite(model, tok, paradigms, batch_size=256)
    t3 = time.time()
    lm_dec = [g >= b for g, b in zip(lm_good, lm_bad)]
    ref_dec = [g >= b for g, b in zip(ref_good, ref_bad)]
    diff = max(abs(a - b) for a, b in zip(lm_good + lm_bad, ref_good + ref_bad))
    print(f"\nfull BLiMP: {len(pairs)} pairs; lm-eval {t1 - t0:.0f} s, reference {t2 - t1:.0f} s, "
          f"fast {t3 - t2:.0f} s; max |ll diff| {diff:.2e}; "
          f"decisions lm-eval==reference {sum(a == b for a, b in zip(lm_dec, ref_dec))}, "
          f"lm-eval==fast {sum(a == bool(r[4]) for a, r in zip(lm_dec, fast_rows))}")
    assert len(pairs) == 67000
    assert lm_dec == ref_dec
    assert lm_dec == [bool(r[4]) for r in fast_rows]
    assert diff < 1e-4


REMOTE_CODE = '''
from transformers import LlamaConfig, LlamaForCausalLM


class TinyRemoteConfig(LlamaConfig):
    model_type = "babydistill_tiny_remote"


class TinyRemoteForCausalLM(LlamaForCausalLM):
    """Stands in for the ensemble model dir: custom code reached through auto_map."""
    config_class = TinyRemoteConfig

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 0.5  # a visibly different distribution than the plain model
        return out
'''


@pytest.fixture
def remote_code_model(tiny_llama, tmp_path):
    import shutil

    d = tmp_path / "remote"
    shutil.copytree(tiny_llama, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(model_type="babydistill_tiny_remote", architectures=["TinyRemoteForCausalLM"],
               auto_map={"AutoConfig": "modeling_tiny.TinyRemoteConfig",
                         "AutoModelForCausalLM": "modeling_tiny.TinyRemoteForCausalLM"})
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "modeling_tiny.py").write_text(REMOTE_CODE)
    return d


@needs_accelerate
def test_trust_remote_code_model_dir(remote_code_model, tiny_llama, blimp_slice, tmp_path):
    model, _ = eval_blimp.load_model(remote_code_model, trust_remote_code=True)
    assert type(model).__name__ == "TinyRemoteForCausalLM"
    outs = {}
    for backend in ("lmeval", "fast"):
        eval_blimp.main(["--model", str(remote_code_model), "--suite-dir", str(blimp_slice),
                         "--suite", "blimp", "--out", str(tmp_path / f"{backend}.json"),
                         "--pairs-out", str(tmp_path / f"{backend}.tsv"), "--backend", backend,
                         "--work-dir", str(tmp_path / "work"), "--trust-remote-code", "--limit", "20"])
        outs[backend] = read_tsv(tmp_path / f"{backend}.tsv")
    assert [r["correct"] for r in outs["lmeval"]] == [r["correct"] for r in outs["fast"]]
    assert max(abs(float(a["ll_good"]) - float(b["ll_good"])) for a, b in zip(outs["lmeval"], outs["fast"])) < 1e-4
    # the custom forward really ran: its scores are not the plain model's
    plain_good, _ = eval_blimp.independent_loglik(tiny_llama, load_suite(blimp_slice, 1)[0].pairs)
    assert abs(plain_good[0] - float(outs["fast"][0]["ll_good"])) > 1e-2


# ---------------------------------------------------------------------------------------
# Issue 11: no code from a model folder runs (case 3), over-long pairs are refused the same
# way by both backends (case 8), a folder without a tokenizer is one line (case 9).

EVIL_CODE = '''
import pathlib
pathlib.Path({marker!r}).write_text("code from the model folder ran")
from transformers import LlamaConfig, LlamaForCausalLM


class EvilConfig(LlamaConfig):
    model_type = {model_type!r}


class EvilForCausalLM(LlamaForCausalLM):
    config_class = EvilConfig
'''


def plant_code(d, marker, model_type, code_file="modeling_evil.py"):
    """Point d's config.json auto_map at code that writes ``marker`` when imported."""
    cfg = json.loads((d / "config.json").read_text())
    module = code_file[:-3]
    cfg["auto_map"] = {"AutoConfig": f"{module}.EvilConfig", "AutoModelForCausalLM": f"{module}.EvilForCausalLM"}
    if model_type != "keep":
        cfg["model_type"] = model_type
    (d / "config.json").write_text(json.dumps(cfg))
    (d / code_file).write_text(EVIL_CODE.format(marker=str(marker), model_type=cfg["model_type"]))


def eval_args(model, suite, tmp_path, backend, *extra):
    return ["--model", str(model), "--suite-dir", str(suite), "--suite", "s", "--backend", backend,
            "--out", str(tmp_path / f"{backend}.json"), "--pairs-out", str(tmp_path / f"{backend}.tsv"),
            "--work-dir", str(tmp_path / "work"), *extra]


BACKENDS = ["fast", pytest.param("lmeval", marks=needs_accelerate)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_plain_model_dir_with_auto_map_runs_no_code(backend, tiny_llama, tmp_path, capsys):
    import shutil

    suite, expected = make_known_suite(tmp_path / "suite")
    marker = tmp_path / "MARKER"
    plain = tmp_path / "plain"
    shutil.copytree(tiny_llama, plain)
    plant_code(plain, marker, "keep")  # a llama: transformers' own class is used
    eval_blimp.main(eval_args(plain, suite, tmp_path, backend))
    assert not marker.exists()
    check_known_outputs(json.loads((tmp_path / f"{backend}.json").read_text()),
                        read_tsv(tmp_path / f"{backend}.tsv"), expected)
    # a model type only the folder's code defines: refused in one line, still nothing ran
    custom = tmp_path / "custom"
    shutil.copytree(tiny_llama, custom)
    plant_code(custom, marker, "babydistill_evil")
    with pytest.raises(SystemExit) as e:
        eval_blimp.main(eval_args(custom, suite, tmp_path, backend))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and str(custom) in err and "auto_map" in err
    assert not marker.exists()


@pytest.fixture(scope="module")
def ensemble_dir(tiny_llama, tiny_gpt2, tmp_path_factory):
    from babydistill.distill.ensemble import save_ensemble

    return save_ensemble([tiny_llama, tiny_gpt2], tmp_path_factory.mktemp("ens") / "ens")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ensemble_scored_with_our_code_not_its_folders(backend, ensemble_dir, tiny_llama, tiny_gpt2,
                                                       tmp_path):
    """The eval rule passes no --trust-remote-code: the ensemble still scores (the members'
    averaged logits), and the code file in its folder, here one that would write a marker,
    never runs."""
    import shutil

    from babydistill.distill.ensemble import CODE_FILE

    ens = tmp_path / "ens"
    shutil.copytree(ensemble_dir, ens)
    marker = tmp_path / "MARKER"
    (ens / CODE_FILE).write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
                                 + (ens / CODE_FILE).read_text())
    suite, _ = make_known_suite(tmp_path / "suite")
    eval_blimp.main(eval_args(ens, suite, tmp_path, backend))
    assert not marker.exists()
    rows = read_tsv(tmp_path / f"{backend}.tsv")
    # the first good sentence's log-likelihood under the mean of the members' logits
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    members = [AutoModelForCausalLM.from_pretrained(d).eval() for d in (tiny_llama, tiny_gpt2)]
    good = load_suite(suite)[0].pairs[0].good
    cont = tok.encode(" " + good, add_special_tokens=False)
    ids = torch.tensor([[tok.bos_token_id] + cont])
    with torch.no_grad():
        logits = torch.stack([m(input_ids=ids).logits.float() for m in members]).mean(0)[0, :-1]
    expected = torch.log_softmax(logits, -1)[torch.arange(len(cont)), ids[0, 1:]].sum().item()
    assert abs(float(rows[0]["ll_good"]) - expected) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_pair_longer_than_context_is_refused_by_both_backends(backend, tiny_llama, tmp_path, capsys):
    suite, _ = make_known_suite(tmp_path / "suite")
    long = " ".join(["The cats are sleeping on the mat."] * 80)  # far over 256 tokens
    with open(suite / "para_b.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"sentence_good": "Every dog barks.", "sentence_bad": long,
                            "pairID": "long-1"}) + "\n")
    with pytest.raises(SystemExit) as e:
        eval_blimp.main(eval_args(tiny_llama, suite, tmp_path, backend))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "para_b" in err and "long-1" in err and "256" in err
    assert not (tmp_path / f"{backend}.json").exists()


def test_context_boundary(tiny_llama):
    """A continuation of exactly the context length is scored; one token more is refused."""
    from babydistill.common import UserError
    from babydistill.eval.scorer import Pair, Paradigm, check_context, encode_choice

    _, tok = eval_blimp.load_model(tiny_llama)
    s = "The cats are sleeping on the mat. " * 3
    n = len(encode_choice(tok, [s])[0][1])
    par = [Paradigm("p", tiny_llama, "c", [Pair("0", "A dog.", s)])]
    check_context(tok, par, n)
    with pytest.raises(UserError, match="pair 0: the bad sentence"):
        check_context(tok, par, n - 1)


def test_model_dir_without_tokenizer_is_one_line(tiny_llama, tmp_path, capsys):
    import shutil

    suite, _ = make_known_suite(tmp_path / "suite")
    d = tmp_path / "notok"
    shutil.copytree(tiny_llama, d)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (d / f).unlink(missing_ok=True)
    for backend in ("fast", "lmeval"):
        with pytest.raises(SystemExit) as e:
            eval_blimp.main(eval_args(d, suite, tmp_path, backend))
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error:") and str(d) in err and "tokenizer" in err


@needs_accelerate
def test_lmeval_log_file_has_no_progress_bar_redraws(tiny_llama, tmp_path):
    """Issue 13: in a log file (stderr not a TTY) lm-eval's, datasets' and the weights' tqdm
    bars are off: the log holds log lines, not carriage-return redraws."""
    import subprocess
    import sys
    suite, _ = make_known_suite(tmp_path / "suite")
    log = tmp_path / "eval.log"
    with log.open("w") as f:
        r = subprocess.run([sys.executable, "-m", "babydistill.eval.blimp",
                            *eval_args(tiny_llama, suite, tmp_path, "lmeval")],
                           stdout=f, stderr=subprocess.STDOUT)
    text = log.read_text()
    assert r.returncode == 0, text
    assert "\r" not in text and "it/s]" not in text and len(text) < 20_000


class _Evil:
    """A pickle whose loading would run code: touch a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _broken_model(kind, tiny_llama, d, marker=None):
    import shutil

    shutil.copytree(tiny_llama, d)
    cfg = json.loads((d / "config.json").read_text())
    if kind in ("vocab_bigger", "vocab_smaller"):
        cfg["vocab_size"] += 50 if kind == "vocab_bigger" else -50
        (d / "config.json").write_text(json.dumps(cfg))
    elif kind == "tokenizer_bigger":
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        tok.add_tokens([f"zzq{i}" for i in range(64)])
        tok.save(str(d / "tokenizer.json"))
    elif kind == "pickle":
        (d / "model.safetensors").unlink()
        torch.save({"model.embed_tokens.weight": _Evil(marker)}, d / "pytorch_model.bin")
    return d


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,match", [
    ("vocab_bigger", r"/m/config\.json: vocab_size 370, but the weights' embedding has 320 rows"),
    ("vocab_smaller", r"/m/config\.json: vocab_size 270, but the weights' embedding has 320 rows"),
    ("tokenizer_bigger", r"/m: the tokenizer has \d+ tokens but the model's embedding only 320 rows"),
    ("pickle", r"/m/pytorch_model\.bin: it holds objects that only unpickling code could build; "
               r"refused, nothing was run"),
])
def test_model_folder_that_cannot_be_scored_is_one_line(backend, kind, match, tiny_llama,
                                                        tmp_path, capsys):
    """Issue 27 #7: a config.json disagreeing with the weights (RuntimeError from
    transformers), a tokenizer larger than the embedding (IndexError, or scores from rows
    that do not exist), a crafted pytorch_model.bin (an UnpicklingError traceback)."""
    marker = tmp_path / "PWNED"
    model = _broken_model(kind, tiny_llama, tmp_path / "m", marker)
    suite, _ = make_known_suite(tmp_path / "suite")
    with pytest.raises(SystemExit) as e:
        eval_blimp.main(eval_args(model, suite, tmp_path, backend))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert re.search(match, err[0]), err[0]
    assert not marker.exists() and not (tmp_path / f"{backend}.json").exists()


def test_lmeval_scratch_of_a_killed_scoring_is_removed_next_time(tmp_path, monkeypatch):
    """Issue 27 #10: a killed lm-eval scoring left a blimp_lmeval_* folder in the system
    temp directory forever; the next scoring removes those of dead processes (only)."""
    import subprocess
    import sys
    import tempfile

    from babydistill.common import _HOST

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    killed = tmp_path / f".blimp_lmeval.{_HOST}.{dead}.abc.tmp"
    live = tmp_path / f".blimp_lmeval.{_HOST}.{os.getppid()}.def.tmp"  # a running scoring's
    for d in (killed, live):
        (d / "tasks").mkdir(parents=True)
    mine = eval_blimp.lmeval_scratch()
    assert not killed.exists() and live.is_dir()
    assert os.path.dirname(mine) == str(tmp_path) and f".{os.getpid()}." in mine
