"""Errors raised by fedsyn.data; each message says what is wrong and how to fix it."""


class DatasetNotFoundError(FileNotFoundError):
    """The requested data is not on disk (and was not, or could not be, downloaded)."""


class UnknownDatasetError(ValueError):
    """``load_dataset`` was given a name it does not know."""


class UnknownSchemeError(ValueError):
    """``partition`` was given a scheme it does not know."""
