"""Execution-guided Text-to-SQL post-training: the workflow's library code."""

__version__ = "0.1.0"
