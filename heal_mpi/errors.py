"""The errors a user reads as one line: bad input (exit 2, before any file is written) and
failures during a run (exit 1, phrased for the user where the cause is known)."""


class InputError(ValueError):
    """A problem with what the user gave (config, data files); raised identically on every rank."""


class ConfigError(InputError):
    """A bad configuration; the message starts with the dotted key."""


class DatasetError(InputError):
    """A dataset file is missing or corrupt. The message is one line naming the path."""


class OutputError(Exception):
    """Writing an output file failed mid-run. The message is one line: the file, why, what is
    safe in it, and how to go on."""
