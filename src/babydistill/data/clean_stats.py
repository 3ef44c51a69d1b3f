"""Stage 1b': the corpus table -- every cleaned file's stats row and its readability.

    python -m babydistill.data.clean_stats --out clean_stats.tsv --stats A.stats.tsv ... --texts A.txt ...

Joins the one-row TSVs that ``babydistill.data.clean --stats`` writes per file and adds the five
readability metrics of each cleaned text (Baby Llama's curriculum, Appendix B); the logic is
:func:`babydistill.data.clean.merge_stats`.
"""

from __future__ import annotations

import argparse

from babydistill.data.clean import merge_stats
from babydistill.common import cli, setup_logging


@cli
def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(prog="python -m babydistill.data.clean_stats",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="the merged TSV")
    ap.add_argument("--stats", nargs="+", required=True, help="per-file stats TSVs")
    ap.add_argument("--texts", nargs="+", required=True,
                    help="the cleaned texts, in the order of --stats")
    ap.add_argument("--log", help="also log to this file")
    args = ap.parse_args(argv)
    setup_logging(args.log)
    return merge_stats(args.stats, args.texts, args.out)


if __name__ == "__main__":
    main()
