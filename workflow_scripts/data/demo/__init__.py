"""The embedded demo benchmark (rule demo_data): declared databases (databases.py, in the vocabulary of
spec.py), question families shared by all of them (families.py) and the builder (build.py)."""

from workflow_scripts.data.demo.build import build_demo

__all__ = ["build_demo"]
