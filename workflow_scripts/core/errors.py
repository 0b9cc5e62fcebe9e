"""Expected mistakes of the user (bad input, bad config); cli.run_cli reports them in one line."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: the message names the input and the fix; no traceback is shown."""
