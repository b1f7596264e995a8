"""Plugins: the hook specifications, the plugin manager and the grader registry."""
