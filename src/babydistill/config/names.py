"""Layer 1, the naming scheme of models and caches: the one place that writes or reads it.

- ``<run>@<seed>``: one instance of a run trained with several ``seeds`` (a plain ``<run>``
  without them). Seeds of one run share a table column and a figure colour.
- ``<run>-peer<i>``: peer i (1-based) of a weighted-mutual-learning run, a model of its own;
  the peer of an instance ``<run>@<seed>`` is ``<run>-peer<i>@<seed>``.
- ``sweep:<name>:best`` (a reference in the config, where a run is named): the best trial of
  sweep ``<name>`` retrained as run ``<name>-best`` (instances ``<name>-best@<seed>``).
- ``<teacher>+<teacher>.k<k>.T<t>``: the teacher cache of those teachers (instances), top-k
  and temperature, shared by every variant and seed that reads the same targets.

Pure string functions, imported by the config (instances, peers, cache keys), the report
(seeds folded into columns, peers expanded) and the workflow.
"""

from __future__ import annotations

import re

SEED_SEP = "@"
PEER_SEP = "-peer"
_PEER = re.compile(rf"^(?P<run>.+){re.escape(PEER_SEP)}(?P<i>\d+)$")


def instance(run: str, seed: int | str | None) -> str:
    """``instance("student", 2)`` -> ``student@2``; ``instance("student", None)`` -> ``student``."""
    return run if seed is None else f"{run}{SEED_SEP}{seed}"


def base_name(name: str) -> str:
    """``student@2`` -> ``student``, ``student`` -> ``student``: the run an instance belongs to."""
    return name.partition(SEED_SEP)[0]


def seed_label(name: str) -> str | None:
    """``student@2`` -> ``"2"`` (the text after the separator), ``student`` -> None."""
    _, sep, seed = name.partition(SEED_SEP)
    return seed if sep else None


def split_instance(name: str) -> tuple[str, int | None]:
    """``student@2`` -> ("student", 2); ``student`` -> ("student", None)."""
    seed = seed_label(name)
    return base_name(name), (None if seed is None else int(seed))


def peer(name: str, i: int) -> str:
    """Peer ``i`` of WML model ``name``: ``peer("wml", 3)`` -> ``wml-peer3``, and for an
    instance ``peer("wml@2", 3)`` -> ``wml-peer3@2`` (the seed stays last)."""
    return instance(f"{base_name(name)}{PEER_SEP}{i}", seed_label(name))


def split_peer(name: str) -> tuple[str, int] | None:
    """The inverse of :func:`peer`: ``wml-peer3`` -> ("wml", 3), ``wml-peer3@2`` ->
    ("wml@2", 3); None for a name that is not a peer."""
    m = _PEER.match(base_name(name))
    if m is None:
        return None
    return instance(m["run"], seed_label(name)), int(m["i"])


SWEEP_REF = re.compile(r"^sweep:(?P<name>[^:]*):(?P<what>[^:]*)$")
SWEEP_BEST_SUFFIX = "-best"


def sweep_ref(text: str) -> str | None:
    """``sweep:<name>:best`` -> ``<name>``; None for a plain run name. A ``sweep:`` text of
    another shape raises ValueError (the caller names the key)."""
    if not isinstance(text, str) or not text.startswith("sweep:"):
        return None
    m = SWEEP_REF.match(text)
    if m is None or m["what"] != "best" or not m["name"]:
        raise ValueError(f"{text!r}: write sweep:<name>:best")
    return m["name"]


def sweep_best_run(sweep: str) -> str:
    """The run that retrains sweep ``sweep``'s best trial: ``<sweep>-best``."""
    return f"{sweep}{SWEEP_BEST_SUFFIX}"


def cache_key(teachers: list[str], k: int, temperature: float, precision: str = "fp32") -> str:
    """``cache_key(["a", "b@1"], 64, 2.0)`` -> ``a+b@1.k64.T2`` (the temperature as ``%g``);
    a cache of another precision than fp32 ends in it (``a+b@1.k64.T2.bf16``), so the two are
    never one folder (fp32 keeps the name every cache had before)."""
    key = f"{'+'.join(teachers)}.k{k}.T{float(temperature):g}"
    return key if precision == "fp32" else f"{key}.{precision}"


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "config.names", "python -m babydistill.config and every stage")
