"""What a training run reports while it runs: ``metrics.csv``, TensorBoard, the progress line.

:class:`MetricsLogger` owns the three outputs of :class:`babydistill.train.trainer.Trainer` and
knows nothing of models or losses: the trainer (and its callbacks) hand it finished
rows of plain numbers.

* ``CHECKPOINT_DIR/metrics.csv``: one row per logging window, evaluation or BLiMP point,
  columns :data:`METRICS_FIELDS` (plus a callback's, e.g. ``blimp_acc``); flushed after
  every row, so it grows as the run goes. On resume the rows past the checkpoint's step
  are dropped (they will be written again) and the file is appended to, so a killed and
  resumed run ends with the same rows as an uninterrupted one.
* ``CHECKPOINT_DIR/tensorboard/``: the numeric columns as scalars (events past the
  checkpoint's step are purged on resume); only when ``torch.utils.tensorboard`` imports.
* the progress bar on stderr (:func:`babydistill.common.progress_bar`): live on a terminal, a plain line at
  most every 30 s in a log file.

Only the main process writes files; the others get a disabled bar and no files.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

from babydistill.common import atomic_path, progress_bar, quiet_library_bars  # noqa: F401 (the trainer's names)

METRICS_FIELDS = ["step", "epoch", "loss", "lr", "tokens_per_s", "eval_loss", "logs"]
TB_SCALARS = ("loss", "lr", "tokens_per_s", "eval_loss", "blimp_acc")


class MetricsLogger:
    """metrics.csv + TensorBoard + progress bar of one run (see the module docstring).

    ``directory``: where metrics.csv and tensorboard/ go (None: no files). ``fields``:
    the CSV columns. ``main``: whether this process writes (rank 0)."""

    def __init__(self, directory: str | Path | None, fields: list[str], *, main: bool = True,
                 tensorboard: bool = True):
        self.directory = Path(directory) if directory else None
        self.fields = list(fields)
        self.main, self.tensorboard = main, tensorboard
        self._file = self._writer = self._tb = self.bar = None

    @property
    def path(self) -> Path | None:
        return self.directory / "metrics.csv" if self.directory else None

    def open(self, step: int, total_steps: int, resumed: bool) -> None:
        """Start (or, ``resumed``, continue at ``step``): metrics.csv keeps the rows up to
        ``step`` and is appended to; TensorBoard purges events after it; the bar starts."""
        if self.main and self.directory:
            rows = []
            if resumed and self.path.is_file():
                with self.path.open(newline="") as f:  # only this run's columns (blimp may be toggled)
                    rows = [{k: r.get(k) or "" for k in self.fields} for r in csv.DictReader(f)
                            if int(r["step"]) <= step]
            with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
                w = csv.DictWriter(f, self.fields)
                w.writeheader()
                w.writerows(rows)
            self._file = self.path.open("a", newline="")
            self._writer = csv.DictWriter(self._file, self.fields)
            if self.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:  # tensorboard is optional
                    SummaryWriter = None
                if SummaryWriter:
                    self._tb = SummaryWriter(str(self.directory / "tensorboard"),
                                             purge_step=step + 1)
        self.bar = progress_bar(total_steps, initial=step, disable=not self.main)

    def row(self, **row) -> None:
        """One metrics.csv row (missing columns stay empty) and its numbers in TensorBoard."""
        if self._file:
            self._writer.writerow(row)
            self._file.flush()
        if self._tb:
            for k in TB_SCALARS:
                if isinstance(row.get(k), float):
                    self._tb.add_scalar(k, row[k], row["step"])

    def progress(self, steps: int, *, loss: float, tokens_per_s: float, lr: float) -> None:
        """Advance the bar by ``steps`` and show the window's loss, speed and lr."""
        self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:,.0f}", lr=f"{lr:.2e}",
                             refresh=False)
        self.bar.update(steps)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self._file:
            self._file.close()
        if self._tb:
            self._tb.close()
        self._file = self._writer = self._tb = None


if __name__ == "__main__":
    from babydistill.common import library_help

    library_help(__doc__, "train.metrics", "python -m babydistill.train.pretrain and babydistill.distill.student")
