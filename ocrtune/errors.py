"""One exception type for mistakes a user can fix: the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class ConfigError(UserError):
    """A run config that does not parse or validate; the message names the file and the key."""
