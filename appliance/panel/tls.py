"""Self-signed TLS certificate for the panel (with subjectAltName, which browsers require).

`install.sh` calls `python -m appliance.panel.tls CERT KEY [--host NAME]... [--ip ADDR]...`;
`appliance web` creates one next to the database when no certificate is configured.
Uses the `cryptography` package, or the openssl command line when that is not installed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

DAYS = 825  # the longest validity Apple/Chrome accept for a server certificate


def default_names() -> tuple[list[str], list[str]]:
    hosts = ["localhost"]
    for h in (socket.gethostname(), socket.getfqdn()):
        if h and h not in hosts:
            hosts.append(h)
    return hosts, ["127.0.0.1", "::1"]


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def make_self_signed(
    cert_path: str | Path,
    key_path: str | Path,
    hostnames: list[str] | None = None,
    ips: list[str] | None = None,
    days: int = DAYS,
) -> tuple[Path, Path]:
    """Write an EC P-256 key (0600) and a self-signed certificate whose SAN lists hosts and IPs."""
    cert_path, key_path = Path(cert_path), Path(key_path)
    d_hosts, d_ips = default_names()
    hosts = list(dict.fromkeys((hostnames or []) + d_hosts))
    addrs = list(dict.fromkeys((ips or []) + d_ips))
    try:
        from cryptography import x509  # noqa: F401
    except ImportError:
        return _openssl(cert_path, key_path, hosts, addrs, days)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[1] if len(hosts) > 1 else hosts[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "appliance panel (self-signed)"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    san = [x509.DNSName(h) for h in hosts] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in addrs
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _openssl(cert_path: Path, key_path: Path, hosts: list[str], addrs: list[str], days: int):
    exe = shutil.which("openssl")
    if exe is None:
        raise RuntimeError("neither the cryptography package nor the openssl command is available")
    san = ",".join([f"DNS:{h}" for h in hosts] + [f"IP:{a}" for a in addrs])
    with tempfile.TemporaryDirectory() as tmp:
        k, c = Path(tmp) / "key.pem", Path(tmp) / "cert.pem"
        subprocess.run(
            [
                exe,
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(k),
                "-out",
                str(c),
                "-days",
                str(days),
                "-subj",
                f"/CN={hosts[-1]}/O=appliance panel (self-signed)",
                "-addext",
                f"subjectAltName={san}",
                "-addext",
                "extendedKeyUsage=serverAuth",
            ],
            check=True,
            capture_output=True,
        )
        _write_private(key_path, k.read_bytes())
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.write_bytes(c.read_bytes())
    return cert_path, key_path


def ensure_certificate(cert_path: str | Path, key_path: str | Path, **kw) -> tuple[Path, Path]:
    """Create the pair unless both files exist."""
    cert_path, key_path = Path(cert_path), Path(key_path)
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    return make_self_signed(cert_path, key_path, **kw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m appliance.panel.tls", description=__doc__.splitlines()[0]
    )
    p.add_argument("cert")
    p.add_argument("key")
    p.add_argument("--host", action="append", default=[], help="extra DNS name (repeatable)")
    p.add_argument("--ip", action="append", default=[], help="extra IP address (repeatable)")
    p.add_argument("--days", type=int, default=DAYS)
    p.add_argument("--force", action="store_true", help="replace an existing pair")
    a = p.parse_args(argv)
    fn = make_self_signed if a.force else ensure_certificate
    cert, key = fn(a.cert, a.key, hostnames=a.host, ips=a.ip, days=a.days)
    print(f"certificate {cert}, key {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
