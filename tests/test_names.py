"""The naming scheme (babydistill.config.names): instances, WML peers, teacher-cache keys."""

from __future__ import annotations

import pytest

from babydistill.config import names


@pytest.mark.parametrize("run, seed, name", [("student", 2, "student@2"), ("student", None, "student"),
                                              ("kd-x.v2", 0, "kd-x.v2@0")])
def test_instance_and_split_instance_are_inverse(run, seed, name):
    assert names.instance(run, seed) == name
    assert names.split_instance(name) == (run, seed)
    assert names.base_name(name) == run
    assert names.seed_label(name) == (None if seed is None else str(seed))


def test_seed_label_is_the_text_after_the_first_separator():
    # tables sort seed labels as text and key verdicts by them: kept as written
    assert names.seed_label("a@07") == "07" and names.split_instance("a@07") == ("a", 7)
    assert names.base_name("a@1@2") == "a" and names.seed_label("a@1@2") == "1@2"
    with pytest.raises(ValueError):
        names.split_instance("a@x")


def test_peer_keeps_the_seed_last_and_split_peer_inverts_it():
    assert names.peer("wml", 3) == "wml-peer3"
    assert names.peer("wml@2", 3) == "wml-peer3@2"
    assert names.split_peer("wml-peer3") == ("wml", 3)
    assert names.split_peer("wml-peer3@2") == ("wml@2", 3)
    assert names.split_peer("my-peer-run-peer12") == ("my-peer-run", 12)
    for plain in ("wml", "wml@2", "wml-peer", "wml-peerx", "-peer1"):
        assert names.split_peer(plain) is None
    for name in ("w", "w@1", "a-peer2"):
        for i in (1, 10):
            assert names.split_peer(names.peer(name, i)) == (name, i)


def test_cache_key_formats_the_temperature_with_g():
    assert names.cache_key(["a", "b@1"], 64, 2.0) == "a+b@1.k64.T2"
    assert names.cache_key(["a"], 8, 1.5) == "a.k8.T1.5"
    assert names.cache_key(["a"], 8, 2) == names.cache_key(["a"], 8, 2.0)
