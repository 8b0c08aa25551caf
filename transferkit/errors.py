"""Errors a user can cause and fix; the CLI prints them as one line and exits with code 2."""


class TransferkitError(Exception):
    """Base class of every error caused by user input (bad name, bad data, bad option)."""


class ConfigError(TransferkitError, ValueError):
    """An invalid model name, option or combination of options."""


class DataError(TransferkitError, ValueError):
    """A dataset that cannot be used as given (missing, empty, unreadable, too few classes)."""


class WeightsError(TransferkitError):
    """Requested weights that cannot be found, downloaded or fitted to the model."""
