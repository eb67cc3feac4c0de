"""User-facing errors: one line naming the file, the record and the problem; exit code 2."""


class UserError(Exception):
    """Bad input or usage.  The message is shown as-is, without a traceback."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message.replace("\n", " "))
