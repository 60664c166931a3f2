"""``part.errors.run_cli``: the one place where a command line's errors become exit codes and one
line on stderr."""
import pytest

from part.errors import ConfigError, DataError, RunStopped, run_cli


class Special(Exception):
    pass


def _raise(exc):
    def work():
        raise exc
    return work


@pytest.mark.parametrize("exc,code,line", [
    (RunStopped("at step 3", 143), 143, "stopped: at step 3"),
    (DataError("bad file x.edf"), 2, "error: bad file x.edf"),
    (ConfigError("bad key"), 2, "error: bad key"),
    (KeyboardInterrupt(), 130, "interrupted; rerun the same command to continue"),
])
def test_errors_become_one_line_and_an_exit_code(capsys, exc, code, line):
    assert run_cli(_raise(exc)) == code
    assert capsys.readouterr().err == line + "\n"


def test_return_values_codes_and_os_errors(capsys):
    assert run_cli(lambda: None) == 0 and run_cli(lambda: 1) == 1
    assert run_cli(_raise(Special("odd")), codes={Special: 1}) == 1
    assert capsys.readouterr().err == "error: odd\n"
    missing = FileNotFoundError(2, "No such file or directory", "/x/out.pth")
    assert run_cli(_raise(missing), os_error="cannot write the export") == 2
    expected = "error: cannot write the export ([Errno 2] No such file or directory: '/x/out.pth')\n"
    assert capsys.readouterr().err == expected
    with pytest.raises(FileNotFoundError):  # without os_error an OSError is a bug's: not swallowed
        run_cli(_raise(missing))
    with pytest.raises(ZeroDivisionError):
        run_cli(lambda: 1 / 0)
    assert run_cli(_raise(KeyboardInterrupt()), interrupted="stopped early") == 130
    assert capsys.readouterr().err == "stopped early\n"


def test_worker_wrapped_messages_are_unwrapped(capsys):
    wrapped = DataError("Caught DataError in DataLoader worker process 0.\n"
                        "Original Traceback (most recent call last):\n  File ...\n"
                        "part.errors.DataError: x.npy is damaged")
    assert run_cli(_raise(wrapped)) == 2 and capsys.readouterr().err == "error: x.npy is damaged\n"
