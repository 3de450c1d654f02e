"""Throwaway TLS material for the upstream tests, made with the ``openssl`` command.

A private CA, a server certificate it signed for ``localhost`` and ``127.0.0.1``, one it signed
for another host only (a host-name mismatch), and one signed by a CA nobody trusts.
(``trustme`` would need the ``cryptography`` package, which nothing else here uses.)
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
LEAF_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature\n"
    "extendedKeyUsage=serverAuth\n"
    "authorityKeyIdentifier=keyid\n"
    "subjectAltName={names}\n"
)


@dataclass(frozen=True)
class ServerCertificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA the tests trust through RAG_UPSTREAM__CA_BUNDLE
    localhost: ServerCertificate  # signed by ``ca`` for localhost and 127.0.0.1
    other_host: ServerCertificate  # signed by ``ca`` for other.example only
    untrusted: ServerCertificate  # for localhost and 127.0.0.1, signed by another CA


def make_certificates(folder: Path) -> Certificates | None:
    """The test certificates in ``folder``; None without an ``openssl`` command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    ca = _make_ca(openssl, folder, "ca")
    stranger = _make_ca(openssl, folder, "stranger-ca")
    return Certificates(
        ca=ca[0],
        localhost=_make_leaf(openssl, folder, "localhost", "DNS:localhost,IP:127.0.0.1", ca),
        other_host=_make_leaf(openssl, folder, "other", "DNS:other.example", ca),
        untrusted=_make_leaf(openssl, folder, "untrusted", "DNS:localhost,IP:127.0.0.1", stranger),
    )


def _make_ca(openssl: str, folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _run(
        openssl, "req", "-x509", *EC_KEY, "-days", "2", "-subj", f"/CN=rag-service test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def _make_leaf(
    openssl: str, folder: Path, name: str, names: str, ca: tuple[Path, Path]
) -> ServerCertificate:
    cert, key, request = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    extensions = folder / f"{name}.ext"
    extensions.write_text(LEAF_EXTENSIONS.format(names=names))
    _run(openssl, "req", *EC_KEY, "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(request))
    _run(
        openssl, "x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(cert),
    )  # fmt: skip
    return ServerCertificate(cert, key)


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)
