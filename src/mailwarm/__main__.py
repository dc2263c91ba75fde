"""``python -m mailwarm``: the same as the ``mailwarm`` command."""

from mailwarm.cli import main

main()
