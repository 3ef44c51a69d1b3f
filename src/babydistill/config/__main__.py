"""``python -m babydistill.config CONFIG.yaml``: validate a config file, print a summary."""

from babydistill.config import main

main()
