"""Data: dataset readers and the one row model (prompt, reference, grader inputs)."""
