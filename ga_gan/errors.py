"""One exception type for bad input, so the CLI can print one line and exit 2."""


class UserError(Exception):
    """A problem the user can fix (missing folder, wrong shape, unknown name, NaN fitness).

    The CLI prints ``error: <message>`` and exits with status 2; library callers can catch it.
    """

    exit_code = 2
