"""The ``ilsvrc`` command's entry point.

It lives outside the ``ilsvrc`` package on purpose: importing the package
imports torch, which takes seconds, and a Ctrl-C in those seconds should end
the command as one at any later moment does (``ilsvrc.cli.main``): one line
and exit code 130, not a traceback through torch's import machinery.
(``python -m ilsvrc`` imports the package before any of its code runs, so
there a Ctrl-C during the import still prints Python's traceback.)
"""

import signal
import sys


def main(argv=None) -> int:
    try:
        from ilsvrc.cli import main as command
    except KeyboardInterrupt:
        if argv is None:  # the process is the command and ends now: another Ctrl-C would only break its exit
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("ilsvrc: interrupted", file=sys.stderr)
        return 130
    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
