"""leash remote workers: run Python functions as leash tasks (docs/workers.md)."""

from .errors import AuthError, ConnectError, LeashError, TypeConflictError
from .worker import Context, Worker

__all__ = ["Worker", "Context", "LeashError", "ConnectError", "AuthError", "TypeConflictError"]
