"""The project's own exceptions for what a user can fix or chose to stop.

The command line prints each as one line on stderr (docs/architecture.md, "Rules
the code keeps"), with its own exit code: a ``UserError`` 2, ``Diverged`` 3,
``Interrupted`` 130 (README, "Exit codes and errors"); anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A bad path, flag, dataset or checkpoint: something the user can fix."""


class Diverged(UserError):
    """Training stopped because its loss or weights turned NaN or infinite;
    the message names the step and the last good checkpoint."""


class Interrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving its place."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has
    none): the reason a one-line error gives for what failed beneath it."""
    text = str(e)
    return text.splitlines()[0] if text.strip() else type(e).__name__
