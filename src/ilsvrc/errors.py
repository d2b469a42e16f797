"""The project's own exception for mistakes a user can fix.

A ``UserError`` is printed by the command line as one line on stderr with exit
code 2 (DESIGN.md, "How the code should read"); anything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """A bad path, flag, dataset or checkpoint: something the user can fix."""


class Interrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving its place."""
