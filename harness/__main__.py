"""``python -m harness`` runs the same Hydra app as the ``harness`` console script."""

from harness.run import main

main()
