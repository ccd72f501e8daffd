"""Errors a user can fix. They carry a message that says what is wrong and how to fix it;
the entry point prints them without a traceback."""


class ZooError(Exception):
    """Base class of the zoo's user-facing errors."""


class ConfigError(ZooError):
    """An impossible or invalid configuration, found before any data is loaded."""


class DataError(ZooError):
    """Missing, corrupt or malformed input data."""


class TrainingDiverged(ZooError, FloatingPointError):
    """The loss became NaN or infinite."""
