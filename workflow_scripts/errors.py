"""Expected mistakes of the user (bad input, bad config) and how entry points report them."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake in the user's input: the message names the input and the fix; no traceback is shown."""


def run_cli(main: Callable[[], None]) -> None:
    """Run an entry point; a UserError ends it with one line on stderr and exit status 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
