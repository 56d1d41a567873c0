"""The settings every test app starts from.

Lowered password-hashing costs (bcrypt 4, scrypt 2^10) keep thousands of sign-ins affordable;
production refuses them (``tests/unit/test_config.py`` proves the defaults), and the loopback is
the staff network so that staff sign in from the test client. ``tests/conftest.py`` builds its
apps from these, and a test that builds its own app (an outage, another database) starts from
them too.
"""

from __future__ import annotations

from typing import Any

TEST_SETTINGS: dict[str, Any] = {
    "bcrypt_rounds": 4,
    "scrypt_log2_n": 10,
    "staff_networks": "127.0.0.0/8,::1/128",
}
