"""``python -m cbloss``: the ``cbloss`` command line (see ``cbloss --help``)."""

from .cli import main

raise SystemExit(main())
