"""Structural KL alignment (kl) and its analysis of the workflow's training sets and predictions."""
