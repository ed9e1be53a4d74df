"""Stage 4: validate conformed rows with the table's pandera contract."""

from lakesync.validate.contract import (
    CompiledContract,
    FileUniqueness,
    UniqueTracker,
    compile_contract,
    validate_chunk,
)

__all__ = ["CompiledContract", "FileUniqueness", "UniqueTracker", "compile_contract", "validate_chunk"]
