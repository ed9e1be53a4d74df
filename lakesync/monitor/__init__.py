"""Health of lakes and tables, judged by plain functions (turned into Dagster asset checks in defs)."""

from lakesync.monitor.health import (
    Verdict,
    batch_history,
    conservation_verdict,
    contract_verdict,
    freshness_verdict,
    volume_verdict,
)

__all__ = [
    "Verdict",
    "batch_history",
    "conservation_verdict",
    "contract_verdict",
    "freshness_verdict",
    "volume_verdict",
]
