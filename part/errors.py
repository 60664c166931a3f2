"""Errors shared by the whole toolkit.

Both error classes mark bad *user* input, as opposed to bugs. The training CLI catches
``UserInputError`` (their common base), prints the message as one paragraph and exits with code 2,
so every message must say what is wrong, where (file, key or value), what is allowed and what to do.

- ``DataError``: bad or missing input data (a missing directory, a corrupt file, a checkpoint that
  cannot be read, a split naming a missing record).
- ``ConfigError``: a bad recipe (a missing or non-YAML file, an unknown key, a wrong type, a value
  out of range, an override that is not ``dotted.key=value``).
"""


class UserInputError(ValueError):
    """Common base of the errors the CLI reports as one paragraph with exit code 2."""


class DataError(UserInputError):
    """Bad or missing input data: the message names the path, the expectation and the fix."""


class ConfigError(UserInputError):
    """Bad recipe: the message names the file or key, the value, what is allowed and the fix."""
