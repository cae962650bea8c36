"""The error types that mean "bad input from the user": the CLI prints them without a traceback."""

from __future__ import annotations

from fedsyn.data import DatasetNotFoundError
from fedsyn.models import UnknownModelError
from fedsyn.sweep.schema import ConfigError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DatasetNotFoundError, UnknownModelError, FileNotFoundError)
