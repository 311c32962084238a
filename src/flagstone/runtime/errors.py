"""The runtime's one exception: a bundle it refuses (the last good bundle stays live)."""

from __future__ import annotations


class BundleError(ValueError):
    """A bundle that cannot be used, saying where: ``flag 'x': rules[0].serve: ...``.

    ``kind`` is ``"flag"``, ``"segment"`` or ``"experiment"`` (or None for the bundle as
    a whole), ``key`` the object's key and ``field`` the path inside it.
    """

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        key: str | None = None,
        field: str | None = None,
        incomplete: bool = False,
    ) -> None:
        self.reason = message
        self.incomplete = incomplete  # unreadable JSON: perhaps a file caught half-written
        self.kind = kind
        self.key = key
        self.field = field
        where = f"{kind} {key!r}" if kind is not None else ""
        if field:
            where = f"{where}: {field}" if where else field
        super().__init__(f"{where}: {message}" if where else message)

    @property
    def flag(self) -> str | None:
        """The flag the refusal is about, if it is about one."""
        return self.key if self.kind == "flag" else None


class BundleUnavailable(BundleError):
    """The bundle's source could not be read (a missing file, an HTTP error, a timeout)."""
