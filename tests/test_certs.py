"""The deployment's test credentials (``fedsyn.federation.certs``), checked with real cryptography: the
server certificate is issued by the CA for the requested names and passes a real TLS handshake for each,
SuperNode keys are OpenSSH P-384 pairs that Flower's loaders accept, secrets are private to their owner,
and nothing is overwritten unasked.
"""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from fedsyn.federation import certs
from fedsyn.federation.certs import CertificateError, CertificatePlan, create_certificates


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> certs.Certificates:
    return create_certificates(tmp_path_factory.mktemp("certs"), CertificatePlan(supernodes=3, days=2))


def test_server_certificate_is_issued_by_the_ca_for_every_host(written: certs.Certificates) -> None:
    ca = x509.load_pem_x509_certificate(written.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(written.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    found = [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] + names.get_values_for_type(x509.DNSName)
    assert found == list(certs.DEFAULT_HOSTS)
    assert 1 < (server.not_valid_after_utc - server.not_valid_before_utc).days <= 2


def handshake(written: certs.Certificates, server_name: str) -> dict:
    """One TLS handshake on 127.0.0.1 between a server holding the SuperLink's certificate and a client
    that trusts only the CA and checks ``server_name``; returns the certificate the client accepted."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(written.server_cert, written.server_key)
    client_context = ssl.create_default_context(cafile=str(written.ca_cert))
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def accept() -> None:
            connection, _ = listener.accept()
            try:
                with server_context.wrap_socket(connection, server_side=True):
                    pass
            except OSError:  # the client refused the certificate and hung up
                pass

        server = threading.Thread(target=accept)
        server.start()
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                with client_context.wrap_socket(raw, server_hostname=server_name) as tls:
                    return tls.getpeercert()
        finally:
            server.join(timeout=10)


@pytest.mark.parametrize("server_name", ["127.0.0.1", "localhost", "superlink"])
def test_tls_clients_trusting_the_ca_accept_the_server_under_each_name(
    written: certs.Certificates, server_name: str
) -> None:
    assert handshake(written, server_name)["subject"] == ((("commonName", "127.0.0.1"),),)


def test_tls_clients_reject_the_server_under_another_name(written: certs.Certificates) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(written, "superlink.example.org")


def test_supernode_keys_are_openssh_p384_pairs(written: certs.Certificates) -> None:
    public_keys = set()
    for index in range(1, written.supernodes + 1):
        private = serialization.load_ssh_private_key(written.supernode_key(index).read_bytes(), None)
        public = serialization.load_ssh_public_key(written.supernode_public_key(index).read_bytes())
        assert isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP384R1)
        assert private.public_key() == public
        public_keys.add(written.supernode_public_key(index).read_text())
    assert len(public_keys) == written.supernodes
    assert not written.supernode_key(written.supernodes + 1).exists()


def test_private_keys_are_readable_by_their_owner_only(written: certs.Certificates) -> None:
    secrets = [written.folder / certs.CA_KEY, written.server_key, written.supernode_key(1)]
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(written.ca_cert.stat().st_mode) & 0o044 == 0o044


def test_existing_credentials_are_replaced_only_when_asked(tmp_path: Path) -> None:
    first = create_certificates(tmp_path, CertificatePlan(supernodes=1))
    old_ca = first.ca_cert.read_bytes()
    with pytest.raises(CertificateError, match="ca.crt.*overwrite"):
        create_certificates(tmp_path, CertificatePlan(supernodes=1))
    assert first.ca_cert.read_bytes() == old_ca
    create_certificates(tmp_path, CertificatePlan(supernodes=1), overwrite=True)
    assert first.ca_cert.read_bytes() != old_ca


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"supernodes": 0}, "supernodes"),
        ({"hosts": ()}, "hosts"),
        ({"hosts": ("bad host!",)}, "hosts"),
        ({"days": 0}, "days"),
    ],
)
def test_plan_rejects_bad_fields_by_name(fields: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        CertificatePlan(**fields)


def test_command_line_adds_hosts_and_reports_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert certs.main([str(tmp_path), "--supernodes", "1", "--host", "10.0.0.7"]) == 0
    server = x509.load_pem_x509_certificate((tmp_path / certs.SERVER_CERT).read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.0.0.7" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert certs.main([str(tmp_path)]) == 1
    assert "overwrite" in capsys.readouterr().err
