"""Print the current TOTP code for a secret: ``python -m medchat.cli.totp_code SECRET``.

For signing in to a local demo without an authenticator app; any RFC 6238 app works too.
"""

from __future__ import annotations

import sys

import pyotp

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m medchat.cli.totp_code SECRET")
    print(pyotp.TOTP(sys.argv[1]).now())
