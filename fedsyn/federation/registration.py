"""Register SuperNode public keys with a SuperLink that runs with SuperNode authentication.

    python -m fedsyn.federation.registration --superlink HOST:PORT --root-certificates CA KEY.pub [KEY.pub ...]

A SuperLink started with ``--enable-supernode-auth`` refuses every SuperNode whose public key it does
not hold, so the keys go in before the SuperNodes start: the compose file's ``register`` service runs
this, and the SuperNodes wait for it to finish. Each key is one ``flwr supernode register`` (Flower's
Control API, over TLS trusting CA) from a temporary ``$FLWR_HOME``. A key registered twice is an error
(Flower answers "Public key already in use"); the SuperLink keeps its registrations only while it runs
unless it was started with ``--database``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import deployment

CONNECTION = "fedsyn"


def register_supernodes(
    superlink: str, public_keys: list[Path], *, root_certificates: Path, timeout: float = 120
) -> None:
    """Register every key of ``public_keys`` with the SuperLink at ``superlink`` (host:port), after
    waiting up to ``timeout`` seconds for it to answer; raises ``DeploymentError`` with Flower's message
    on the first key it refuses."""
    missing = [str(path) for path in [root_certificates, *public_keys] if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"no such file: {', '.join(missing)} (create them with fedsyn.federation.certs)")
    deployment.wait_for_port(superlink, timeout)
    with tempfile.TemporaryDirectory(prefix="fedsyn-register-") as home:
        config = deployment.flower_config(CONNECTION, superlink, root_certificates=root_certificates.resolve())
        Path(home, deployment.CONFIG_FILE).write_text(config)
        env = {**os.environ, **deployment.ENVIRONMENT, "FLWR_HOME": home}
        for key in public_keys:
            command = deployment.register_command(key.resolve(), CONNECTION)
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
            if done.returncode != 0:
                raise deployment.DeploymentError(
                    f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
                )
            print(f"registered {key}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fedsyn.federation.registration", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("public_keys", type=Path, nargs="+", help="SuperNode public keys (OpenSSH format)")
    parser.add_argument("--superlink", required=True, help="the SuperLink's address, host:port")
    parser.add_argument(
        "--root-certificates", type=Path, required=True, help="the CA certificate that signed the SuperLink's"
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the SuperLink")
    args = parser.parse_args(argv)
    try:
        register_supernodes(
            args.superlink, args.public_keys, root_certificates=args.root_certificates, timeout=args.timeout
        )
    except (deployment.DeploymentError, FileNotFoundError) as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
