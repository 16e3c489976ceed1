"""The library's one error type for a failed run, as opposed to a user's mistake.

A user's mistake (a bad argument, file or recipe) is a ``ValueError`` or ``FileNotFoundError``
naming the thing and what was expected; the CLI exits 2 on it. ``RunFailed`` is a run that went
wrong with valid input (a NaN loss, a converted graph that is not what its mode promises); the
CLI exits 1 on it.
"""


class RunFailed(RuntimeError):
    """A run failed on valid input; the message says what happened and what to try."""
