"""Model judges: the OpenAI-compatible client and the grader server."""
