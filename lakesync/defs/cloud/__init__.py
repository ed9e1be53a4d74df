"""One module per cloud provider: its Dagster resource and how it opens the lake's store.

Imported only when a configuration has a lake on that provider, so a local setup does not pay
for the cloud SDKs.
"""
