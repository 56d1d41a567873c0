"""Who may do what: roles, permissions, authentication, 2FA, tokens, networks, key custody.

This package imports from ``medchat`` only ``db``, ``models``, ``errors``, ``clock`` and
``audit`` (authentication events are audited where they happen).
"""
