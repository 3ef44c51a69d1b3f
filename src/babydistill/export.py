"""The official BabyLM 2025 results layout for one model and its revisions (rule export).

``python -m babydistill.export``, the issue's name for it: an entry above the layers that runs
:mod:`babydistill.report.export`, which owns the code and documents the layout.
"""

import babydistill.report.export as stage

if __name__ == "__main__":
    stage.PROG = "python -m babydistill.export"
    stage.main()
