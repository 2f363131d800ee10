"""The one exception for a person's mistake: a bad flag, a missing file, a config that cannot work.

Every command raises :class:`UserError` (or a subclass) for input it refuses, with a message that says what was
wrong and what to do. The CLI prints that message on one line and exits with status 2, as argparse does for a bad
flag; anything else is a bug in minillama and keeps its traceback. It subclasses ``ValueError`` so that library
callers who catch ``ValueError`` keep working.
"""

from __future__ import annotations


class UserError(ValueError):
    """Input a person gave that minillama refuses; the message is shown as is, without a traceback."""
