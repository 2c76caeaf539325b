"""Flight SQL over TLS: a cluster serving a self-signed certificate answers `grpc+tls://`
with worker locations in `grpc+tls://`, and the client fetches the pieces from the workers
trusting that certificate alone."""

from __future__ import annotations

import datetime
import ipaddress

import pytest

import tally_client
from conftest import running_cluster

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def self_signed(folder):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    (folder / "node.pem").write_bytes(pem)
    (folder / "node.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pem


def test_answers_stream_from_the_workers_over_tls(tmp_path, tpch_data):
    pem = self_signed(tmp_path)
    tls = ["--tls-cert", str(tmp_path / "node.pem"), "--tls-key", str(tmp_path / "node.key")]
    tls += ["--tls-ca", str(tmp_path / "node.pem")]
    tables = {"nation": tpch_data / "nation", "orders": tpch_data / "orders"}
    with running_cluster(tmp_path, tables, tls, url_scheme="grpc+tls", tls_root_certs=pem) as cluster:
        url = f"grpc+tls://{cluster.endpoint}"
        with tally_client.connect(url, token=cluster.token, tls_root_certs=pem) as tally:
            assert tally.sql("SELECT count(*) AS n FROM orders").column("n").to_pylist() == [15000]
            names = tally.sql("SELECT n_name FROM nation WHERE n_nationkey = $1", [7])
            assert names.column("n_name").to_pylist() == ["GERMANY"]
        # Plaintext gets no answer from a TLS port.
        with pytest.raises(tally_client.TallyError):
            tally_client.connect(f"grpc://{cluster.endpoint}", token=cluster.token)
