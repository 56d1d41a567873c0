"""``deploy/nginx/medchat.conf`` passes ``nginx -t`` on a stock Debian nginx (issue 13 item 3).

The documented step copies the file to ``conf.d/`` of a Debian nginx, whose default site
(``sites-enabled/default``) stays enabled and is the default server of port 80. The file used
to claim port 80's default server too, and ``nginx -t`` refused both ("duplicate default
server"). Here the real ``nginx`` binary checks the file in a throwaway prefix laid out as
Debian lays out ``/etc/nginx``: Debian's ``nginx.conf`` and default site (stock text, comments
dropped), the file in ``conf.d/``, certificate paths and log paths pointed into the prefix
(what an operator edits anyway), and throwaway self-signed certificates made here.

Skipped, saying why, where nginx is not installed; ``.ci/run`` installs Debian's nginx
(``make nginx-deps``) and sets ``MEDCHAT_REQUIRE_NGINX`` so that CI fails instead.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "nginx" / "medchat.conf"
SERVER_NAME = "medchat.example.org"

#: Debian's /etc/nginx/nginx.conf (bookworm's nginx-common, comments dropped), its paths under
#: the prefix; the temporary paths are added so that `nginx -t` run as a user other than root
#: does not try to create Debian's /var/lib/nginx.
DEBIAN_NGINX_CONF = """\
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;
include {prefix}/modules-enabled/*.conf;
events {{
    worker_connections 768;
}}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log {prefix}/logs/access.log;
    gzip on;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    include {prefix}/conf.d/*.conf;
    include {prefix}/sites-enabled/*;
}}
"""
#: Debian's /etc/nginx/sites-available/default, enabled by the package (comments dropped).
DEBIAN_DEFAULT_SITE = """\
server {
    listen 80 default_server;
    listen [::]:80 default_server;
    root /var/www/html;
    index index.html index.htm index.nginx-debian.html;
    server_name _;
    location / {
        try_files $uri $uri/ =404;
    }
}
"""


def _nginx() -> str:
    found = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(path, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("MEDCHAT_REQUIRE_NGINX"):
            pytest.fail("nginx is not installed and MEDCHAT_REQUIRE_NGINX is set (CI)")
        pytest.skip("nginx is not installed (`make nginx-deps` installs Debian's, as root)")
    return found


def _throwaway_certificate(folder: Path) -> None:
    """fullchain.pem, privkey.pem and chain.pem for SERVER_NAME, self-signed, valid one day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True)
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    (folder / "fullchain.pem").write_bytes(pem)
    (folder / "chain.pem").write_bytes(pem)
    (folder / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _debian_prefix(tmp_path: Path, site: str) -> Path:
    """A throwaway /etc/nginx as Debian's package leaves it, with ``site`` in conf.d/."""
    prefix = tmp_path / "nginx"
    for folder in ("modules-enabled", "conf.d", "sites-enabled", "logs", "tmp"):
        (prefix / folder).mkdir(parents=True)
    (prefix / "nginx.conf").write_text(DEBIAN_NGINX_CONF.format(prefix=prefix))
    (prefix / "sites-enabled" / "default").write_text(DEBIAN_DEFAULT_SITE)
    _throwaway_certificate(prefix / "tls" / SERVER_NAME)
    # What the operator edits: where the certificates and the logs are.
    site = site.replace(f"/etc/nginx/tls/{SERVER_NAME}/", f"{prefix}/tls/{SERVER_NAME}/")
    site = site.replace("/var/log/nginx/", f"{prefix}/logs/")
    (prefix / "conf.d" / "medchat.conf").write_text(site)
    return prefix


def _nginx_t(tmp_path: Path, site: str) -> subprocess.CompletedProcess[str]:
    prefix = _debian_prefix(tmp_path, site)
    return subprocess.run(
        [_nginx(), "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _single_host(site: str) -> str:
    """The one-host variant of the documented steps: the upstream is gunicorn on 127.0.0.1."""
    start = site.index("upstream medchat_app {")
    end = site.index("keepalive 32;", start)
    servers = "".join(
        line for line in site[start:end].splitlines(keepends=True) if "server " in line
    )
    return site.replace(servers, "    server 127.0.0.1:8000;\n", 1)


@pytest.mark.parametrize("variant", ["as shipped", "single host"])
def test_the_shipped_file_passes_nginx_t_beside_debians_default_site(tmp_path, variant):
    site = SHIPPED.read_text()
    if variant == "single host":
        site = _single_host(site)
        assert "10.0.0.11" not in site and "server 127.0.0.1:8000;" in site
    result = _nginx_t(tmp_path, site)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "emerg" not in result.stderr


def test_the_check_catches_a_second_default_server_on_port_80(tmp_path):
    """The harness is a real check: the file as it was (port 80's default server) fails it."""
    site = SHIPPED.read_text().replace("listen 80;", "listen 80 default_server;", 1)
    result = _nginx_t(tmp_path, site)
    assert result.returncode != 0
    assert "duplicate default server" in result.stderr


def test_a_client_request_id_reaches_the_application_only_when_sane():
    """The proxy passes the same X-Request-ID rule as the application applies."""
    from medchat.web.request_log import REQUEST_ID_PATTERN

    site = SHIPPED.read_text()
    assert f'"~{REQUEST_ID_PATTERN.pattern}" $http_x_request_id;' in site
    assert "proxy_set_header X-Request-ID $medchat_request_id;" in site


def test_sign_ins_are_rate_limited_for_all_addresses_together_in_json():
    """Issue 15: a sign-in flood comes from many addresses, so the proxy's limit is keyed on
    the server, not the client; its refusal is the API's 429 with ``Retry-After``."""
    text = SHIPPED.read_text()
    assert "limit_req_zone $server_name zone=medchat_sign_in" in text
    for route in ("location = /api/v1/auth/token {", "location = /console/login {"):
        block = text.split(route, 1)[1].split("}", 1)[0]
        assert "limit_req zone=medchat_sign_in" in block
        assert "error_page 429 = @sign_in_busy" in block
    busy = text.split("location @sign_in_busy {", 1)[1].split("\n    }", 1)[0]
    assert "Retry-After" in busy and '"code": "rate_limited"' in busy
    console = text.split("location = /console/login {", 1)[1].split("}", 1)[0]
    assert "allow 10.20.0.0/16;" in console and "deny all;" in console  # the staff networks
