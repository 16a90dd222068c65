"""The one exception type for mistakes in what a user gave (ours; base layer, importable everywhere).

A UserError names the input (a file, an option, a value, a peer's message) and the fix; the
command line (refimpl.cli.main) prints it as one line `refimpl: <message>` and exits with 2.
Anything else that escapes a command is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """A bad input, file, option or peer message: one clear line, exit code 2, no traceback."""
