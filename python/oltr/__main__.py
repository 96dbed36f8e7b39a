"""``python -m oltr`` runs the ``oltr`` command."""
from oltr.cli import main

raise SystemExit(main())
