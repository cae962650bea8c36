"""The error types that mean "bad input from the user": the CLI prints them without a traceback."""

from __future__ import annotations

from fedsyn.data import DatasetNotFoundError
from fedsyn.data.errors import UnknownDatasetError, UnknownSchemeError
from fedsyn.defenses.dpsgd import DPIncompatibleModelError
from fedsyn.federation.capture import CaptureError
from fedsyn.federation.settings import RunConfigError
from fedsyn.models import UnknownModelError
from fedsyn.sweep.schema import ConfigError

USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    CaptureError,
    RunConfigError,
    DatasetNotFoundError,
    UnknownDatasetError,
    UnknownSchemeError,
    UnknownModelError,
    DPIncompatibleModelError,
    FileNotFoundError,
)
