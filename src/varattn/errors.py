"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A problem with the user's input (file, config, checkpoint) that the user can fix.

    The message is one line: where (``path:line`` when there is one), what is wrong, and what to do.
    The command line prints it without a traceback and exits with status 2.
    """
