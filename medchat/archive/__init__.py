"""The sealed archive: the signed, hash-chained ledger of deletions, its records and content
hashes, the signing key, the export bundle, and the gate on live conversations' archive wraps."""
