"""User-caused errors: one named exception family, turned into `Error: ...` and exit 2 by the CLI."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad value, bad file); the message names it in one line."""


class DataError(UserError):
    """A face set, image or manifest that cannot be read as asked."""
