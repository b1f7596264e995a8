"""The grader core: Sample, Outcome, Grade, Grader, GraderSet, errors and the helpers graders share.

Knows nothing of plugins, training, Ray or the CLI.
"""
