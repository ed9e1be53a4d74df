"""Stage 5: commit rows to the unified Delta tables (and rejected ones to quarantine)."""
