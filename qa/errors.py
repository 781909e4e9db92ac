"""User-facing errors. Each carries the HTTP status the web layer answers with; the CLI prints the message."""


class QAError(Exception):
    """A problem the user can fix; the message says how. Never a bug."""

    status = 400


class InvalidInput(QAError):
    """Empty, blank or oversized question, malformed article fields."""


class NotFound(QAError):
    """Unknown document id or missing file."""

    status = 404


class Conflict(QAError):
    """Two articles claim the same document id."""

    status = 409


class TooLarge(QAError):
    """An article over the size limit."""

    status = 413


class UnsupportedFile(QAError):
    """Binary, non-UTF-8 or unknown file type."""

    status = 415


class IndexMissing(QAError):
    """No index has been built yet at the configured location."""

    status = 409


class IndexMismatch(QAError):
    """The index on disk was built with other model or chunker settings."""

    status = 409


class IndexCorrupt(QAError):
    """The index database is damaged (fails SQLite's check, or is empty): `qa doctor` repairs what it can."""

    status = 503


class StorageFull(QAError):
    """The disk holding the index is full; the write was rolled back and the index is unchanged."""

    status = 507
