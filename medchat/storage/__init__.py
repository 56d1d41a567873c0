"""The database's edges: migrations run from the package, outages told from bugs, and row tags
checked on every load and written on every flush (the database is untrusted)."""
