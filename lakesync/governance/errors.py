"""What governance commands refuse to do, and why (the CLI prints these without a traceback)."""


class ErasureError(ValueError):
    """The erasure cannot be done as asked (unknown subject, a value of the wrong type, a purge
    while a sync is in flight...)."""
