"""User-facing errors.

Library code raises :class:`DassEdgeError` for bad input (a missing folder, a corrupt checkpoint,
an arch the teacher cannot host). The CLI turns it into one line on stderr and exit code 2, so users
never see a traceback for a mistake they can fix.
"""

from __future__ import annotations

__all__ = ["DassEdgeError"]


class DassEdgeError(Exception):
    """An error caused by the user's input; the message says what is wrong and what to do."""
