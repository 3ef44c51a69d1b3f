"""A model folder's revisions as a hub-ready local git repository (no network).

Owns ``MODEL_DIR/hub.git``: a bare repository with one branch per revision
(``MODEL_DIR/revisions/chck_<N>M``, oldest first, each commit the parent of the next) and
``main``, the final model folder's own files (not ``revisions/`` nor ``hub.git``). On the
Hugging Face hub a branch is a revision: ``from_pretrained(repo, revision="chck_1M")``
loads it, which a local folder cannot (``revision=`` is ignored there), hence both the
folders and the branches. Pushing is all that is left::

    git --git-dir MODEL_DIR/hub.git push --all https://huggingface.co/<user>/<model>

(the hub stores files over 10 MB with git-lfs: ``git lfs migrate import --everything
--include='*.safetensors'`` in a clone first, where git-lfs is installed; it is not here).

The git CLI runs with argument lists, no shell, no user or system configuration, and fixed
author and dates, so the same folders give the same commit ids.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from babydistill.common import UserError

HUB = "hub.git"
REVISIONS = "revisions"
_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "babydistill", "GIT_AUTHOR_EMAIL": "babydistill@localhost",
        "GIT_COMMITTER_NAME": "babydistill", "GIT_COMMITTER_EMAIL": "babydistill@localhost",
        "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
        "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000"}


def git(args: list[str], env: dict | None = None) -> str:
    """Run ``git ARGS`` (a list, no shell); one-line UserError when it fails."""
    full = {**os.environ, **_ENV, **(env or {})}
    try:
        r = subprocess.run(["git", *args], env=full, capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise UserError("git: not found; install git to write the hub repository") from None
    except subprocess.CalledProcessError as e:
        msg = (e.stderr or e.stdout or "").strip().splitlines()
        raise UserError(f"git {args[0]}: {msg[-1] if msg else e}") from None
    return r.stdout.strip()


def _commit(repo: Path, folder: Path, branch: str, message: str, parent: str | None,
            exclude: tuple[str, ...] = ()) -> str:
    """Commit ``folder``'s files (less ``exclude``) as ``branch`` of bare ``repo``."""
    with tempfile.TemporaryDirectory() as t:
        env = {"GIT_INDEX_FILE": str(Path(t) / "index")}
        base = ["--git-dir", str(repo), "--work-tree", str(folder)]
        git([*base, "add", "--all", "--force", "--", ".", *(f":(exclude){e}" for e in exclude)],
            env)
        tree = git([*base, "write-tree"], env)
    commit = git(["--git-dir", str(repo), "commit-tree", tree, *(["-p", parent] if parent else []),
                  "-m", message])
    git(["--git-dir", str(repo), "update-ref", f"refs/heads/{branch}", commit])
    return commit


def write_hub_repo(model_dir: str | os.PathLike, revisions: list[tuple[str, str]]) -> Path:
    """``model_dir/hub.git``: ``revisions`` (``(name, commit message)``, oldest first, each a
    folder of ``model_dir/revisions``) as branches, then ``main``, the model folder itself."""
    model_dir = Path(model_dir)
    repo = model_dir / HUB
    # no template: no sample hooks or description, only what the branches need
    git(["init", "--quiet", "--bare", "--template=", "--initial-branch=main", str(repo)])
    parent = None
    for name, message in revisions:
        parent = _commit(repo, model_dir / REVISIONS / name, name, message, parent)
    _commit(repo, model_dir, "main", "the final model", parent, exclude=(REVISIONS, HUB))
    return repo


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "train.hub", "python -m babydistill.train.pretrain and "
                 "babydistill.distill.student")
