"""Issue 26: the scoring conventions of the official BabyLM pipelines, each recomputed here
with plain transformers forward passes (one unpadded sentence at a time, written out as the
pipelines do it, not with the scorer's code), and eval_blimp agreeing pair for pair, both
backends where lm-eval can express the convention:

- babylm-2023: ``[EOS] + tokens(" " + sentence)``, every sentence token scored;
- babylm-2024: ``[BOS] + tokens(" " + sentence)`` (unchanged);
- babylm-2025: ``tokenizer(sentence)`` as is, the model reads ``tokens[:-1]``, predicts
  ``tokens[1:]``, and the phrase mask (character offsets) picks the summed ones;

ties counted and given to the good sentence, over-long sentences refused per convention,
the 2025 temperature scan reported at its best temperature, lm-eval's refusals one line.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from babydistill.common import UserError
from babydistill.eval import blimp as eval_blimp
from babydistill.eval.scorer import (CONVENTIONS, Pair, Paradigm, best_temperature, check_context,
                                     encode_no_prefix, load_suite)
from test_scorer import (  # noqa: F401  (fixtures shared with test_scorer)
    blimp_slice, make_known_suite, read_tsv, slice_suite, tiny_gpt2, tiny_llama)

torch.set_num_threads(1)
needs_accelerate = pytest.mark.skipif(
    __import__("importlib").util.find_spec("accelerate") is None,
    reason="lm-eval's hf model needs the accelerate package")
NAMES = list(CONVENTIONS)


# ------------------------------------------------------------------ the independent reference


def reference_scores(model_dir, pairs, convention: str, temperature: float = 1.0) -> tuple[list, list]:
    """(good, bad) log-likelihoods of ``pairs`` under ``convention``, one sentence per forward."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for p in pairs:
            for s in (p.good, p.bad):
                out.append(_reference_one(model, tok, s, p.context, convention, temperature))
    return out[0::2], out[1::2]


def _reference_one(model, tok, sentence: str, context: str, convention: str, temperature: float) -> float:
    if convention == "babylm-2025":
        # evaluation-pipeline-2025 dataset.py/compute_results.py, causal backend
        text = f"{context} {sentence}" if context else sentence
        completion = " " + sentence if context else sentence
        enc = tok(text, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        if len(ids) < 2:
            return 0.0  # nothing predicted
        start = len(text) - len(completion) + offsets[0][0]
        phrase = torch.tensor([float(end > start) for _, end in offsets])
        inputs, targets = torch.tensor([ids[:-1]]), torch.tensor(ids[1:])
        logp = torch.log_softmax(model(input_ids=inputs).logits[0].float() / temperature, -1)
        return (logp[torch.arange(len(targets)), targets] * phrase[1:]).sum().item()
    cont = tok.encode(" " + sentence, add_special_tokens=False)
    if context:
        if convention != "babylm-2023":
            raise NotImplementedError  # lm-eval's whole-then-split encoding: checked against lm-eval
        ctx = tok.encode(context, add_special_tokens=False)  # the 2023 fork encodes it apart
    else:
        ctx = [tok.eos_token_id if convention == "babylm-2023" else tok.bos_token_id]
    ids = torch.tensor([ctx + cont])
    logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    return logp[torch.arange(len(ctx) - 1, ids.shape[1] - 1), ids[0, len(ctx):]].sum().item()


def run_cli(model, suite, tmp_path, backend, convention, *extra, tag=""):
    name = f"{backend}-{convention}{tag}"
    eval_blimp.main(["--model", str(model), "--suite-dir", str(suite), "--suite", "s",
                     "--backend", backend, "--convention", convention,
                     "--out", str(tmp_path / f"{name}.json"), "--pairs-out", str(tmp_path / f"{name}.tsv"),
                     "--work-dir", str(tmp_path / "work"), "--batch-size", "16", *extra])
    return json.loads((tmp_path / f"{name}.json").read_text()), read_tsv(tmp_path / f"{name}.tsv")


def assert_rows_match(rows, good, bad, tol=1e-4):
    """Every pair: the TSV's log-likelihoods are the reference's and so is the decision."""
    assert len(rows) == len(good)
    worst = max(abs(float(r["ll_good"]) - g) + abs(float(r["ll_bad"]) - b) for r, g, b in zip(rows, good, bad))
    assert worst < tol
    assert [int(r["correct"]) for r in rows] == [int(g >= b) for g, b in zip(good, bad)]


def _pairs(suite):
    return [p for par in load_suite(suite) for p in par.pairs]


# ------------------------------------------------------------------ fast backend, every convention


@pytest.mark.parametrize("convention", NAMES)
@pytest.mark.parametrize("model_fixture", ["tiny_llama", "tiny_gpt2"])
def test_fast_backend_reproduces_each_convention_pair_for_pair(convention, model_fixture, blimp_slice,
                                                               tmp_path, request):
    model = request.getfixturevalue(model_fixture)
    pairs = _pairs(blimp_slice)
    good, bad = reference_scores(model, pairs, convention)
    summary, rows = run_cli(model, blimp_slice, tmp_path, "fast", convention)
    assert_rows_match(rows, good, bad)
    assert summary["convention"] == convention and list(summary)[-1] == "convention"
    assert {r["convention"] for r in rows} == {convention}
    assert summary["ties"] == sum(g == b for g, b in zip(good, bad)) == 0


def test_the_conventions_score_differently(tiny_llama, blimp_slice):
    """The three give different numbers for the same sentences: no convention aliases another."""
    pairs = _pairs(blimp_slice)[:20]
    scores = {c: reference_scores(tiny_llama, pairs, c)[0] for c in NAMES}
    for a in NAMES:
        for b in NAMES:
            if a < b:
                assert max(abs(x - y) for x, y in zip(scores[a], scores[b])) > 1e-3, (a, b)


def test_2025_encoding_is_the_tokenizers_call_with_the_first_token_unscored(tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    sentences = ["The cats are sleeping on the mat.", "Who should Derek hug?", "a"]
    for s, (ctx, cont) in zip(sentences, encode_no_prefix(tok, sentences)):
        ids = tok(s)["input_ids"]
        assert ctx + cont == ids and ctx == ids[:1]  # no prefix, the first token is context only
    # a one-token sentence has nothing scored: its score is 0, and a pair of two such ties
    assert encode_no_prefix(tok, ["a"]) == [(tok("a")["input_ids"], [])]


@pytest.fixture(scope="module")
def tiny_llama_with_template(tiny_llama, tmp_path_factory):
    """tiny_llama whose tokenizer itself adds <s> ... </s> (a TemplateProcessing post-processor),
    as many hub tokenizers do: the 2025 code then scores the first word after <s>, not </s>."""
    from tokenizers import Tokenizer, processors

    d = tmp_path_factory.mktemp("tpl") / "m"
    shutil.copytree(tiny_llama, d)
    raw = Tokenizer.from_file(str(d / "tokenizer.json"))
    raw.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    raw.save(str(d / "tokenizer.json"))
    return d


def test_2025_with_a_tokenizer_that_adds_special_tokens(tiny_llama_with_template, blimp_slice, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama_with_template)
    ids = tok("The cats are sleeping.")["input_ids"]
    assert ids[0] == 1 and ids[-1] == 2  # the fixture does what it says
    (ctx, cont), = encode_no_prefix(tok, ["The cats are sleeping."])
    assert ctx == [1] and cont == ids[1:-1]  # first word scored after <s>; </s> unscored
    pairs = _pairs(blimp_slice)
    good, bad = reference_scores(tiny_llama_with_template, pairs, "babylm-2025")
    _, rows = run_cli(tiny_llama_with_template, blimp_slice, tmp_path, "fast", "babylm-2025")
    assert_rows_match(rows, good, bad)


@pytest.fixture
def ewok_suite(tmp_path):
    d = tmp_path / "ewok"
    d.mkdir()
    recs = [{"Context1": "The box is on the table.", "Context2": "The box is under the table.",
             "Target1": "The box is above the floor.", "Target2": "The box is below the floor.",
             "Domain": "spatial"},
            {"Context1": "Sarah gave David a book.", "Context2": "David gave Sarah a book.",
             "Target1": "David has the book.", "Target2": "Sarah has the book.", "Domain": "spatial"}]
    (d / "spatial.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return d


@pytest.mark.parametrize("convention", ["babylm-2023", "babylm-2025"])
def test_context_suites_follow_each_pipelines_encoding(convention, ewok_suite, tiny_llama, tmp_path):
    """EWoK: 2023 encodes the context apart from " " + target; 2025 scores the target's
    tokens inside ``context + " " + target`` (its phrase mask)."""
    pairs = _pairs(ewok_suite)
    assert pairs[0].context == "The box is on the table."
    good, bad = reference_scores(tiny_llama, pairs, convention)
    _, rows = run_cli(tiny_llama, ewok_suite, tmp_path, "fast", convention)
    assert_rows_match(rows, good, bad)


# ------------------------------------------------------------------ lm-eval backend


@needs_accelerate
@pytest.mark.parametrize("convention", ["babylm-2023", "babylm-2024"])
def test_lmeval_backend_reproduces_the_conventions_it_can_express(convention, blimp_slice, tiny_llama, tmp_path):
    suite = slice_suite(tmp_path / "suite", blimp_slice, sorted(p.stem for p in blimp_slice.glob("*.jsonl")), 12)
    pairs = _pairs(suite)
    good, bad = reference_scores(tiny_llama, pairs, convention)
    lm, lm_rows = run_cli(tiny_llama, suite, tmp_path, "lmeval", convention)
    fast, fast_rows = run_cli(tiny_llama, suite, tmp_path, "fast", convention)
    assert_rows_match(lm_rows, good, bad)
    assert_rows_match(fast_rows, good, bad)
    assert [r["correct"] for r in lm_rows] == [r["correct"] for r in fast_rows]
    assert lm["convention"] == fast["convention"] == convention
    assert lm["accuracy"] == fast["accuracy"] and lm["ties"] == fast["ties"]


@needs_accelerate
@pytest.mark.parametrize("convention", NAMES)
def test_ties_are_counted_and_go_to_the_good_sentence(convention, tiny_llama, tmp_path):
    """make_known_suite's para_a holds one pair of identical sentences: a tie under every
    convention, counted per paradigm and in total, and scored correct by both backends."""
    suite, expected = make_known_suite(tmp_path / "suite")
    backends = ["fast"] + (["lmeval"] if CONVENTIONS[convention].lmeval else [])
    for backend in backends:
        summary, rows = run_cli(tiny_llama, suite, tmp_path, backend, convention)
        assert summary["ties"] == 1
        assert {k: v["ties"] for k, v in summary["paradigms"].items()} == {"para_a": 1, "para_b": 0,
                                                                          "qa_congruence_easy": 0}
        tie = next(r for r in rows if r["pair_id"] == "12")
        assert tie["ll_good"] == tie["ll_bad"] and tie["correct"] == "1"
        if convention != "babylm-2025":  # "shorter wins" is a fact only when every token is scored
            assert {(r["paradigm"], r["pair_id"]): int(r["correct"]) for r in rows} == expected["correct"]


def _one_line_error(capsys, argv):
    with pytest.raises(SystemExit) as e:
        eval_blimp.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    return err


@pytest.mark.parametrize("extra,words", [
    (["--backend", "lmeval", "--convention", "babylm-2025"], ["--convention babylm-2025", "--backend fast"]),
    (["--backend", "lmeval", "--convention", "babylm-2025", "--temperatures", "1.0"], ["--temperatures"]),
    (["--backend", "fast", "--convention", "babylm-2024", "--temperatures", "1.0", "2.0"],
     ["--temperatures", "babylm-2024", "babylm-2025"]),
    (["--backend", "fast", "--convention", "babylm-2025", "--temperatures", "0"], ["--temperatures", "> 0"]),
    (["--backend", "fast", "--convention", "babylm-2026"], ["--convention babylm-2026", "babylm-2025"]),
])
def test_what_a_backend_cannot_do_is_refused_in_one_line(extra, words, tiny_llama, tmp_path, capsys):
    suite, _ = make_known_suite(tmp_path / "suite")
    err = _one_line_error(capsys, ["--model", str(tiny_llama), "--suite-dir", str(suite), "--suite", "s",
                                   "--out", str(tmp_path / "r.json"), "--pairs-out", str(tmp_path / "p.tsv"),
                                   *extra])
    assert all(w in err for w in words), err
    assert not (tmp_path / "r.json").exists()


def test_lmeval_refuses_2023_on_a_context_suite(ewok_suite, tiny_llama, tmp_path, capsys):
    err = _one_line_error(capsys, ["--model", str(tiny_llama), "--suite-dir", str(ewok_suite), "--suite", "e",
                                   "--out", str(tmp_path / "r.json"), "--pairs-out", str(tmp_path / "p.tsv"),
                                   "--backend", "lmeval", "--convention", "babylm-2023"])
    assert "--convention babylm-2023 --backend lmeval" in err and "--backend fast" in err


# ------------------------------------------------------------------ over-long sentences


def test_over_long_semantics_per_convention(tiny_llama):
    """2023/2024: the continuation (the tokens of " " + sentence) must fit the context;
    2025: the model's input, all the sentence's tokens but the last, must."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    s = "The cats are sleeping on the mat. " * 3
    n = len(tok(s)["input_ids"])
    assert n == len(tok.encode(" " + s, add_special_tokens=False))  # same tokens here (add_prefix_space)
    par = [Paradigm("p", tiny_llama, "c", [Pair("0", "A dog.", s)])]
    for convention, fits in (("babylm-2023", n), ("babylm-2024", n), ("babylm-2025", n - 1)):
        check_context(tok, par, fits, convention=convention)
        with pytest.raises(UserError, match="pair 0: the bad sentence"):
            check_context(tok, par, fits - 1, convention=convention)


@pytest.mark.parametrize("backend", ["fast", pytest.param("lmeval", marks=needs_accelerate)])
@pytest.mark.parametrize("convention", NAMES)
def test_pair_longer_than_context_is_refused_under_every_convention(convention, backend, tiny_llama, tmp_path,
                                                                    capsys):
    if backend == "lmeval" and not CONVENTIONS[convention].lmeval:
        pytest.skip("lm-eval refuses this convention before any length check")
    suite, _ = make_known_suite(tmp_path / "suite")
    long = " ".join(["The cats are sleeping on the mat."] * 80)  # far over 256 tokens
    with open(suite / "para_b.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"sentence_good": "Every dog barks.", "sentence_bad": long, "pairID": "long-1"}) + "\n")
    err = _one_line_error(capsys, ["--model", str(tiny_llama), "--suite-dir", str(suite), "--suite", "s",
                                   "--out", str(tmp_path / "r.json"), "--pairs-out", str(tmp_path / "p.tsv"),
                                   "--backend", backend, "--convention", convention,
                                   "--work-dir", str(tmp_path / "work")])
    assert "para_b" in err and "long-1" in err and "256" in err


# ------------------------------------------------------------------ the 2025 temperature scan


def test_temperature_scan_is_reported_as_the_2025_pipeline_reports_it(tiny_llama, blimp_slice, tmp_path):
    """Each temperature's decisions are the reference's at ``log_softmax(logits / t)``; the
    summary and the pairs are those of the temperature with the best macro accuracy (in
    percent over paradigms, the first of equals), with the whole scan listed in order."""
    temps = [0.5, 1.0, 3.0]
    pairs = _pairs(blimp_slice)
    paradigms = load_suite(blimp_slice)
    refs = [reference_scores(tiny_llama, pairs, "babylm-2025", t) for t in temps]
    macro = []
    for good, bad in refs:
        k, accs = 0, []
        for par in paradigms:
            correct = sum(good[k + i] >= bad[k + i] for i in range(len(par.pairs)))
            accs.append(100.0 * correct / len(par.pairs))
            k += len(par.pairs)
        macro.append(sum(accs) / len(accs))
    best = max(range(len(temps)), key=lambda i: (macro[i], -i))
    summary, rows = run_cli(tiny_llama, blimp_slice, tmp_path, "fast", "babylm-2025", "--temperatures",
                            *map(str, temps))
    assert summary["temperature"] == temps[best]
    assert [s["temperature"] for s in summary["temperature_scan"]] == temps
    assert [100 * s["accuracy"] for s in summary["temperature_scan"]] == pytest.approx(macro)
    assert summary["accuracy"] == summary["temperature_scan"][best]["accuracy"]
    assert_rows_match(rows, *refs[best])
    # without a scan: temperature 1, the plain 2025 score, and no scan keys
    plain, plain_rows = run_cli(tiny_llama, blimp_slice, tmp_path, "fast", "babylm-2025", tag="-plain")
    assert "temperature_scan" not in plain
    assert_rows_match(plain_rows, *refs[1])


def test_best_temperature_takes_the_first_of_equals():
    def summary(*accs):
        return {"paradigms": {f"p{i}": {"acc": a, "n": 4} for i, a in enumerate(accs)}}
    assert best_temperature([summary(0.5, 0.75), summary(0.75, 0.5), summary(0.25, 0.25)], [1, 2, 3]) == 0
    assert best_temperature([summary(0.25, 0.5), summary(0.75, 0.5), summary(1.0, 0.25)], [1, 2, 3]) == 1


# ------------------------------------------------------------------ real BLiMP, every paradigm


def test_real_blimp_every_paradigm_every_convention(shared_subdir, tiny_gpt2, tmp_path):
    """The first 6 pairs of all 67 BLiMP paradigms: the fast backend's decisions and scores
    are the reference's under every convention."""
    src = shared_subdir("blimp")
    suite = slice_suite(tmp_path / "blimp", src, sorted(p.stem for p in src.glob("*.jsonl")), 6)
    pairs = _pairs(suite)
    assert len(pairs) == 6 * 67
    decisions = {}
    for convention in NAMES:
        good, bad = reference_scores(tiny_gpt2, pairs, convention)
        _, rows = run_cli(tiny_gpt2, suite, tmp_path, "fast", convention)
        assert_rows_match(rows, good, bad)
        decisions[convention] = [r["correct"] for r in rows]
    assert len(set(map(tuple, decisions.values()))) > 1  # the conventions decide differently


# ------------------------------------------------------------------ config


def test_config_names_a_convention_per_suite(repo_root):
    import copy

    from babydistill.config import blimp_scoring, load_yaml, prepare, validate

    cfg = load_yaml(repo_root / "workflow" / "demo.yaml")
    prepare(cfg, "demo")
    suite = next(iter(cfg["eval"]["blimp"]["suites"]))
    assert "convention" not in cfg["eval"]["blimp"]  # the demo names none: the schema's default
    assert blimp_scoring(cfg, suite) == ("babylm-2025", None)  # the default for new runs
    cfg["eval"]["blimp"]["convention"] = "babylm-2024"
    assert blimp_scoring(cfg, suite) == ("babylm-2024", None)
    c = copy.deepcopy(cfg)
    c["eval"]["blimp"]["convention"] = "babylm-2025"
    c["eval"]["blimp"]["suites"][suite].update(convention="babylm-2023")
    validate(c, "c")
    assert blimp_scoring(c, suite) == ("babylm-2023", None)
    c["eval"]["blimp"]["suites"][suite].update(convention="babylm-2025", temperatures=[0.5, 1.0])
    validate(c, "c")
    assert blimp_scoring(c, suite) == ("babylm-2025", [0.5, 1.0])
    c["eval"]["blimp"]["suites"][suite]["convention"] = "babylm-2024"
    with pytest.raises(UserError, match=f"eval.blimp.suites.{suite}: temperatures with convention babylm-2024"):
        validate(c, "c")
    c["eval"]["blimp"]["suites"][suite]["convention"] = "2025"
    with pytest.raises(UserError, match="convention: '2025' is not valid"):
        validate(c, "c")
