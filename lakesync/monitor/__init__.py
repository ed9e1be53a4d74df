"""Health of lakes and tables, judged by plain functions (turned into Dagster asset checks in defs).

Every judgment is a :class:`Verdict`: passed, passed with warnings (within tolerance) or failed.
"""

from lakesync.monitor.lake import batch_history, events_verdict, freshness_verdict, volume_verdict
from lakesync.monitor.sync import conservation_verdict, contract_verdict, drift_verdict
from lakesync.monitor.verdict import Outcome, Verdict, human_duration

__all__ = [
    "Outcome",
    "Verdict",
    "batch_history",
    "conservation_verdict",
    "contract_verdict",
    "drift_verdict",
    "events_verdict",
    "freshness_verdict",
    "human_duration",
    "volume_verdict",
]
