"""Test helpers: a controllable clock, account factories, database set-up."""
