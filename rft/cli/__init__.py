"""The ``rft`` command, one module per command group."""
