"""Errors raised by fedsyn.data; each message says what is wrong and how to fix it."""

from fedsyn.errors import FedsynError


class DatasetNotFoundError(FedsynError, FileNotFoundError):
    """The requested data is not on disk (and was not, or could not be, downloaded)."""


class UnknownDatasetError(FedsynError, ValueError):
    """``load_dataset`` was given a name it does not know."""


class UnknownSchemeError(FedsynError, ValueError):
    """``partition`` was given a scheme it does not know."""
