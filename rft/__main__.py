"""``python -m rft``: the same as the ``rft`` command."""

from rft.cli.main import main

main()
