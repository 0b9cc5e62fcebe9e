"""Evaluation: the matrix of variants from their eval rollouts, and scoring of external predictions."""
