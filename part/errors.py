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


class RunStopped(Exception):
    """A run stopped on purpose and can be continued: the CLI prints ``message`` as one line and
    exits with ``exit_code`` (1 non-finite loss, 130 SIGINT, 143 SIGTERM)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def user_message(exc: BaseException) -> str:
    """The one-line message of an error. An error raised in a DataLoader worker arrives wrapped
    ("Caught DataError in DataLoader worker process 0. Original Traceback ..."): its own message
    (the traceback's last line, less the exception's qualified name) is returned instead."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    prefix = f"{type(exc).__module__}.{type(exc).__qualname__}: "
    return last.split(prefix, 1)[1] if prefix in last else last.split(": ", 1)[-1]


def run_cli(work, *, codes=None, os_error: str | None = None,
            interrupted: str = "interrupted; rerun the same command to continue") -> int:
    """A command's exit code: ``work()``'s return value (None: 0), or the toolkit's errors turned
    into one line on stderr and their code, the same for every command line of the toolkit:

    - :class:`RunStopped`: ``stopped: <message>``, its ``exit_code`` (1, 130, 143);
    - a class of ``codes`` ({exception class: exit code}): ``error: <message>``, that code;
    - :class:`UserInputError`: ``error: <message>`` (:func:`user_message`), 2;
    - ``OSError`` when ``os_error`` is given (what was being done, e.g. "cannot write the analysis"):
      ``error: <os_error> (<the OS's message, with the file>)``, 2;
    - ``KeyboardInterrupt``: ``interrupted`` (a string, or a function giving it then), 130.
    """
    import sys

    def fail(message: str, code: int) -> int:
        print(message, file=sys.stderr)
        return code

    try:
        code = work()
    except RunStopped as exc:
        return fail(f"stopped: {exc}", exc.exit_code)
    except KeyboardInterrupt:
        return fail(interrupted() if callable(interrupted) else interrupted, 130)
    except Exception as exc:
        for cls, value in (codes or {}).items():
            if isinstance(exc, cls):
                return fail(f"error: {user_message(exc)}", value)
        if isinstance(exc, UserInputError):
            return fail(f"error: {user_message(exc)}", 2)
        if isinstance(exc, OSError) and os_error is not None:
            return fail(f"error: {os_error} ({exc})", 2)
        raise
    return 0 if code is None else int(code)
