"""Test credentials of a real deployment: a CA, the SuperLink's TLS certificate and SuperNode key pairs.

    python -m fedsyn.federation.certs FOLDER [--supernodes N] [--host NAME ...] [--days D] [--overwrite]

``create_certificates(folder)`` writes, with the ``cryptography`` package:

- ``ca.crt`` / ``ca.key``: a self-signed certificate authority (the ``--ssl-ca-certfile`` of the
  SuperLink and the ``--root-certificates`` of SuperNodes and ``flwr``);
- ``server.pem`` / ``server.key``: the SuperLink's certificate, signed by the CA, valid for every name in
  ``hosts`` (subject alternative names: by default 127.0.0.1 and localhost for one machine, ``superlink``
  for the compose service, whose own Runtime API client also dials 127.0.0.1);
- ``supernode-N.key`` / ``supernode-N.pub`` for N = 1..supernodes: SuperNode authentication key pairs,
  ECDSA P-384 in OpenSSH format, the format Flower 1.41 reads (``flower-supernode
  --auth-supernode-private-key``, ``flwr supernode register``). N matches the compose service
  ``supernode-N``.

Keys come from the operating system's random source, not from a config seed: a key reproducible from a
config would be no secret. These are credentials for tests and a trusted lab network; a production
deployment takes its server certificate from the organisation's own CA.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import Field, ValidationError, field_validator

from fedsyn.errors import FedsynError
from fedsyn.strict import StrictModel

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "superlink")
CURVE = ec.SECP384R1
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


class CertificateError(FedsynError, ValueError):
    """The certificate folder cannot be written as asked."""


def supernode_key(index: int) -> str:
    """File name of SuperNode ``index``'s private key (``index`` counts from 1, like compose's services)."""
    return f"supernode-{index}.key"


def supernode_public_key(index: int) -> str:
    """File name of SuperNode ``index``'s public key, the one ``flwr supernode register`` takes."""
    return f"supernode-{index}.pub"


class CertificatePlan(StrictModel):
    """What ``create_certificates`` writes: host names of the server certificate, SuperNode key pairs,
    validity."""

    hosts: tuple[str, ...] = Field(default=DEFAULT_HOSTS, min_length=1)
    supernodes: int = Field(default=2, ge=1)
    days: int = Field(default=365, ge=1)

    @field_validator("hosts")
    @classmethod
    def _names_or_addresses(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        for host in hosts:
            if not (_is_ip(host) or _HOSTNAME.match(host)):
                raise ValueError(f"{host!r} is neither an IP address nor a DNS host name")
        return hosts


@dataclass(frozen=True)
class Certificates:
    """Paths of the files written by ``create_certificates``."""

    folder: Path
    supernodes: int

    @property
    def ca_cert(self) -> Path:
        return self.folder / CA_CERT

    @property
    def server_cert(self) -> Path:
        return self.folder / SERVER_CERT

    @property
    def server_key(self) -> Path:
        return self.folder / SERVER_KEY

    def supernode_key(self, index: int) -> Path:
        return self.folder / supernode_key(index)

    def supernode_public_key(self, index: int) -> Path:
        return self.folder / supernode_public_key(index)


def create_certificates(
    folder: str | Path, plan: CertificatePlan = CertificatePlan(), *, overwrite: bool = False
) -> Certificates:
    """Write a test CA, the SuperLink's certificate and ``plan.supernodes`` SuperNode key pairs to
    ``folder``. Existing credentials are replaced only with ``overwrite=True`` (new keys invalidate every
    registration and every copy of the old CA)."""
    folder = Path(folder)
    written = Certificates(folder, plan.supernodes)
    names = [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY]
    names += [name for i in range(1, plan.supernodes + 1) for name in (supernode_key(i), supernode_public_key(i))]
    existing = [name for name in names if (folder / name).exists()]
    if existing and not overwrite:
        raise CertificateError(
            f"{folder} already holds {', '.join(existing)}; pass overwrite=True (--overwrite) to replace them"
        )
    folder.mkdir(parents=True, exist_ok=True)

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(CURVE())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedsyn test CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), now, plan.days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )

    server_key = ec.generate_private_key(CURVE())
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, plan.hosts[0])])
    server_cert = (
        _builder(server_name, ca_name, server_key.public_key(), now, plan.days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_general_name(host) for host in plan.hosts]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )

    _write(written.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), secret=False)
    _write(folder / CA_KEY, _pem_private(ca_key), secret=True)
    _write(written.server_cert, server_cert.public_bytes(serialization.Encoding.PEM), secret=False)
    _write(written.server_key, _pem_private(server_key), secret=True)
    for index in range(1, plan.supernodes + 1):
        node_key = ec.generate_private_key(CURVE())
        private = node_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        public = node_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        _write(written.supernode_key(index), private, secret=True)
        _write(written.supernode_public_key(index), public + b"\n", secret=False)
    return written


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _general_name(host: str) -> x509.GeneralName:
    return x509.IPAddress(ipaddress.ip_address(host)) if _is_ip(host) else x509.DNSName(host)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey, now: datetime.datetime, days: int
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, secret: bool) -> None:
    """Write ``data``; private keys are created readable by their owner only."""
    path.unlink(missing_ok=True)
    path.touch(mode=0o600 if secret else 0o644)
    path.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedsyn.federation.certs", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where to write the files (created if missing)")
    parser.add_argument("--supernodes", type=int, default=2, help="SuperNode key pairs to create (default 2)")
    parser.add_argument(
        "--host",
        action="append",
        default=[],
        help=f"a further name or address of the SuperLink for its certificate, besides {', '.join(DEFAULT_HOSTS)}",
    )
    parser.add_argument("--days", type=int, default=365, help="validity of the certificates in days")
    parser.add_argument("--overwrite", action="store_true", help="replace credentials already in the folder")
    args = parser.parse_args(argv)
    try:
        plan = CertificatePlan(hosts=DEFAULT_HOSTS + tuple(args.host), supernodes=args.supernodes, days=args.days)
        create_certificates(args.folder, plan, overwrite=args.overwrite)
    except (ValidationError, CertificateError) as err:
        print(err, file=sys.stderr)
        return 1
    hosts = ", ".join(plan.hosts)
    print(f"wrote a CA, the SuperLink certificate ({hosts}) and {plan.supernodes} SuperNode key pairs to {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
