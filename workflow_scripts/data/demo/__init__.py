"""The embedded demo benchmark (rule demo_data)."""

from workflow_scripts.data.demo.builder import build_demo

__all__ = ["build_demo"]
