"""NATS over TLS, with and without a client certificate, against a real nats-server
that requires TLS: the settings PARKMATE_NATS_TLS_CA/CERT/KEY reach the connection."""

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime import embedded, natsconn
from services.runtime.config import NatsAuth

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs the openssl command to make certificates"
)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(folder: Path) -> None:
    """ca.pem/ca.key, then server.pem (for 127.0.0.1) and client.pem signed by it."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=parkmate-test-ca", "-keyout", "ca.key", "-out", "ca.pem",
        cwd=folder,
    )  # fmt: skip
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        (folder / f"{name}.ext").write_text(ext + "\n")
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=parkmate-test-{name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr",
            cwd=folder,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=folder,
        )  # fmt: skip


@pytest.fixture(scope="module")
def tls_nats(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A nats-server that requires TLS and a client certificate: (URL, PKI folder)."""
    folder = tmp_path_factory.mktemp("nats-tls")
    make_pki(folder)
    port = embedded.free_port()
    (folder / "nats.conf").write_text(
        f"""
        listen: 127.0.0.1:{port}
        jetstream {{ store_dir: "{folder / "js"}" }}
        tls {{
          cert_file: "{folder / "server.pem"}"
          key_file: "{folder / "server.key"}"
          ca_file: "{folder / "ca.pem"}"
          verify: true
        }}
        """
    )
    log = open(folder / "nats.log", "ab")
    proc = subprocess.Popen(
        [embedded.nats_server_binary(), "-c", str(folder / "nats.conf")], stdout=log, stderr=log
    )
    try:
        embedded._wait_port("127.0.0.1", port, proc, "nats-server", folder / "nats.log")
        yield f"tls://127.0.0.1:{port}", folder
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


async def test_connects_with_the_ca_and_a_client_certificate(tls_nats):
    url, pki = tls_nats
    auth = NatsAuth(
        tls_ca=str(pki / "ca.pem"),
        tls_cert=str(pki / "client.pem"),
        tls_key=str(pki / "client.key"),
    )
    nc = await natsconn.connect(url, "test-tls", auth=auth)
    try:
        reply = await nc.request("$JS.API.INFO", b"", timeout=5)
        assert b'"type":"io.nats.jetstream.api.v1.account_info_response"' in reply.data
    finally:
        await nc.close()


async def test_is_refused_without_the_client_certificate(tls_nats):
    url, pki = tls_nats
    # TLS 1.3 sends the server's refusal after the client's handshake: it surfaces as
    # the alert or as the connection reset or broken under the client.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.wait_for(_connect_once(url, NatsAuth(tls_ca=str(pki / "ca.pem"))), timeout=15)


async def test_does_not_trust_a_server_outside_the_ca(tls_nats, tmp_path):
    url, _ = tls_nats
    make_pki(tmp_path)  # another CA that did not sign the server's certificate
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.wait_for(
            _connect_once(url, NatsAuth(tls_ca=str(tmp_path / "ca.pem"))), timeout=15
        )


async def _connect_once(url: str, auth: NatsAuth):
    """One attempt, no reconnects: the service's own connect retries forever."""
    import nats

    nc = await nats.connect(
        url,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=3,
        **natsconn.auth_options(auth),
    )
    await nc.close()
