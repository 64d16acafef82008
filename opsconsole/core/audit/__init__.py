"""The tamper-evident audit log: :mod:`.records` (entries, the canonical hash; no database) and
:mod:`.log` (the chain in the store, appends and verification)."""
