"""Stage 5: commit conformed rows to the unified Delta tables (append, or merge with winners)."""
