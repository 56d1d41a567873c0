"""Staff accounts made through ``/api/v1/admin``, as an admin does it, and their enrollment
(API.md "Admin", "Authentication"): for the admin API's tests of accounts and of the audit
trail.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlparse

import pyotp

ACCOUNTS = "/api/v1/admin/accounts"
ENROLL = "/api/v1/auth/enroll"
CONFIRM = "/api/v1/auth/enroll/confirm"


def new_staff(role: str = "clinician", **changes) -> dict:
    n = uuid.uuid4().hex[:8]
    body = {
        "email": f"staff-{n}@clinic.example.org",
        "role": role,
        "first_name": "Margot",
        "last_name": f"Zylberstein{n}",
    }
    body.update(changes)
    return body


def create(client, headers, body):
    return client.post(ACCOUNTS, json=body, headers=headers)


def totp_secret(provisioning_uri: str) -> str:
    return parse_qs(urlparse(provisioning_uri).query)["secret"][0]


def enroll(client, runtime, token: str, password: str) -> str:
    """Complete enrollment; return the TOTP secret."""
    start = client.post(ENROLL, json={"enrollment_token": token, "password": password})
    assert start.status_code == 200, start.get_json()
    secret = totp_secret(start.get_json()["provisioning_uri"])
    code = pyotp.TOTP(secret).at(runtime.clock.now())
    confirm = client.post(CONFIRM, json={"enrollment_token": token, "totp_code": code})
    assert confirm.status_code == 200, confirm.get_json()
    return secret
