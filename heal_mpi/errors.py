"""Bad user input: the errors that end a run with exit code 2 and one line naming the problem."""


class InputError(ValueError):
    """A problem with what the user gave (config, data files); raised identically on every rank."""


class ConfigError(InputError):
    """A bad configuration; the message starts with the dotted key."""


class DatasetError(InputError):
    """A dataset file is missing or corrupt. The message is one line naming the path."""
