"""The errors a command reports in one line, by exit code (SPEC §5). A refused operation is
:class:`campaigns.enrollment.Refused` (exit 3); bad files are :class:`dsl.diagnostics.SourceError`."""


class UsageError(Exception):
    """A command line that cannot be carried out as written (exit code 2)."""


class UnknownName(ValueError):
    """A campaign, partner or step that does not exist: the user's input is wrong (exit code 1)."""


class ConfigError(Exception):
    """engine.yaml asks for something the environment does not give, such as the signing key
    that ``web.secret_env`` names (exit code 1, one line)."""


class StoreError(Exception):
    """The store cannot be used: its server is unreachable, a driver is missing (exit code 1,
    one line: not a bug of the engine)."""


class StoreBusy(StoreError):
    """Another process kept the store locked longer than we wait (exit code 3: try again)."""


class StoreContention(StoreError):
    """A server store rolled a transaction back because of another worker (a deadlock, a
    serialization failure): doing the work again succeeds (the tick does, by itself)."""
