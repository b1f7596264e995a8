"""Model judges and the grader server.

- :mod:`rft.judges.client`: the async client for OpenAI-compatible endpoints (what the
  judge graders and the ``remote`` grader import), re-exporting :mod:`rft.judges.settings`
  (endpoint settings, usage) and :mod:`rft.judges.breaker` (the circuit breaker).
- :mod:`rft.judges.server`: ``rft serve-graders`` (FastAPI), scoring through
  :mod:`rft.judges.pool` (the scoring engine, several requests at once) behind
  :mod:`rft.judges.guard` (bearer token, request size).
"""
