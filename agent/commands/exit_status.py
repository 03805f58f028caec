"""The two failures a ``blankspot`` command reports, and their exit statuses.

Errors a user can fix (bad arguments, bad config, bad input file) are :class:`UsageError`
and exit 2; a command that was right but could not do its job raises :class:`RuntimeFailure`
and exits 1.  Either prints one line, never a traceback.  A reader that closes the output
early (``blankspot export --out - | head``) ends the command quietly with the status a
Unix tool killed by SIGPIPE has.
"""
from __future__ import annotations

import signal

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_READER_GONE = 128 + signal.SIGPIPE


class UsageError(Exception):
    """A mistake in how the command was called; exit status 2."""


class RuntimeFailure(Exception):
    """The command was right but could not do its job; exit status 1."""
