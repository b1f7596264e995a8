"""``python -m rft``: the same as the ``rft`` command."""

from rft.cli import main

main()
