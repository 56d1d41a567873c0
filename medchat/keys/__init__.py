"""The key hierarchy in one place: role keys in custody, personal keys, conversation keys and
their wraps, content sealed under them, the personal-data cipher, who holds a role key, and what
re-seals: rotation, the re-wrap after a password change, content re-sealed under fresh keys.

Re-sealers receive the service context (``medchat.services.context.ServiceContext``) as an argument;
they import it for type checking only, so this package sits below ``medchat.services``."""
