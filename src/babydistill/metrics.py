"""What a training run reports while it runs: ``metrics.csv``, TensorBoard, the progress line.

:class:`MetricsLogger` owns the three outputs of :class:`babydistill.train.Trainer` and
knows nothing of models or losses: the trainer (and its callbacks) hand it finished
rows of plain numbers.

* ``CHECKPOINT_DIR/metrics.csv``: one row per logging window, evaluation or BLiMP point,
  columns :data:`METRICS_FIELDS` (plus a callback's, e.g. ``blimp_acc``); flushed after
  every row, so it grows as the run goes. On resume the rows past the checkpoint's step
  are dropped (they will be written again) and the file is appended to, so a killed and
  resumed run ends with the same rows as an uninterrupted one.
* ``CHECKPOINT_DIR/tensorboard/``: the numeric columns as scalars (events past the
  checkpoint's step are purged on resume); only when ``torch.utils.tensorboard`` imports.
* the progress bar on stderr (:func:`progress_bar`): live on a terminal, a plain line at
  most every 30 s in a log file.

Only the main process writes files; the others get a disabled bar and no files.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

from tqdm import tqdm

from .common import atomic_path

METRICS_FIELDS = ["step", "epoch", "loss", "lr", "tokens_per_s", "eval_loss", "logs"]
TB_SCALARS = ("loss", "lr", "tokens_per_s", "eval_loss", "blimp_acc")


class _LineWriter:
    """A file for tqdm when stderr is a log file: each redraw becomes one plain line
    instead of a carriage-return overwrite, so a log holds readable lines only."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def quiet_library_bars() -> None:
    """Turn off the progress bars of transformers, datasets and the hub ("Writing model
    shards", "Map", ...): in a log file each is a run of carriage-return redraws."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    disable_progress_bars()
    hf_logging.disable_progress_bar()
    # datasets reads this when it is imported; importing it here only to switch its bars
    # off would cost every stage 0.4 s (only fine-tuning uses datasets).
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


def progress_bar(total: int, desc: str | None = None, initial: int = 0, disable: bool = False,
                 unit: str = "step") -> tqdm:
    """A tqdm bar on stderr: live on a terminal; in a log file a plain line at most every
    30 s (and at the start and end). Set postfixes with ``refresh=False`` -- a refreshing
    ``set_postfix`` redraws on every call whatever ``mininterval`` says."""
    tty = sys.stderr.isatty()
    if not tty:
        quiet_library_bars()
    if tty:
        return tqdm(total=total, desc=desc, initial=initial, unit=unit, disable=disable,
                    file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    # miniters=1 turns off tqdm's monitor thread refreshes (it only touches dynamic miniters)
    return tqdm(total=total, desc=desc, initial=initial, unit=unit, disable=disable,
                file=_LineWriter(sys.stderr), ncols=100, ascii=True, mininterval=30, miniters=1)


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

    library_help(__doc__, "metrics", "python -m babydistill.pretrain and babydistill.distill")
