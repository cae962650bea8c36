"""The base class of every error that means "bad input or a broken run the user can fix".

Each package raises its own subclass (``ConfigError``, ``StoreError``, ``CaptureError``,
``DatasetNotFoundError``, ...) with a message that names what is wrong and how to fix it; the CLI
prints any ``FedsynError`` as one line, without a traceback, and exits non-zero. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class FedsynError(Exception):
    """A user-facing error: its message alone tells the user what to change."""
