"""Run configs: one definition of every field, its default and its validation."""
