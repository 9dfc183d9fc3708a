class LeashError(Exception):
    """An error the server sent, or a failure to reach it. `code` is machine-readable."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectError(LeashError):
    """The server could not be reached at the URL given (wrong host, port or path)."""


class AuthError(LeashError):
    """The server refused the API key (HTTP 401) or the request's Host/Origin (403)."""


class TypeConflictError(LeashError):
    """The server refused one of the worker's task types (code `type_conflict`): it serves
    that type itself, or other workers serve it with another input schema."""
