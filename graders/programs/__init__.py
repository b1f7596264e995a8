"""Programs the built-in graders run inside the sandbox (standard library only).

Read with :func:`rft.sandbox.program_source` (``program_source("graders.programs", NAME)``);
importing one runs nothing.
"""
