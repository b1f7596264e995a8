"""The sandbox: isolated subprocesses for untrusted code."""
