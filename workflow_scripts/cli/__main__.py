"""`python -m workflow_scripts.cli`: the stages' command-line modules, in the order data flows, each with its
one-line purpose (the first line of its docstring; `python -m workflow_scripts.cli.<stage> --help` says more).
"""

from __future__ import annotations

import ast
from pathlib import Path

CLI_DIR = Path(__file__).resolve().parent
# The order the workflow runs them in; a stage added later and not listed here comes last.
ORDER = ("data", "model", "rollout", "pairs", "train", "evaluate", "alignment", "report")


def stages() -> list[tuple[str, str]]:
    """(module name, purpose) of every stage module, read from its source (importing would load torch)."""
    names = sorted(p.stem for p in CLI_DIR.glob("*.py") if not p.stem.startswith("__"))
    names.sort(key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    found = []
    for name in names:
        doc = ast.get_docstring(ast.parse((CLI_DIR / f"{name}.py").read_text())) or ""
        first = doc.splitlines()[0] if doc else ""
        found.append((name, first.partition(": ")[2] if first.startswith("Stage `") else first))
    return found


def main() -> None:
    rows = stages()
    width = max(len(f"python -m workflow_scripts.cli.{name}") for name, _ in rows)
    print("The workflow's stages in the order data flows (each a rule's command; --help for its options):")
    for name, purpose in rows:
        print(f"  {f'python -m workflow_scripts.cli.{name}':<{width}}  {purpose}")


if __name__ == "__main__":
    main()
