"""``python -m babydistill.export``: the official BabyLM results layout for one model and its
revisions; an entry above the layers, as the issue names it, that runs
:mod:`babydistill.report.export` (which owns the code and documents the layout)."""

from babydistill.report.export import main

if __name__ == "__main__":
    main()
