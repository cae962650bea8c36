"""Every user-facing error is a FedsynError, so the CLI prints any of them as one line."""

from __future__ import annotations

import pytest

from fedsyn.cli import WeightsFetchError, main
from fedsyn.data import DatasetNotFoundError, UnknownDatasetError, UnknownSchemeError
from fedsyn.defenses.dpsgd import DPIncompatibleModelError
from fedsyn.errors import FedsynError
from fedsyn.evaluation.capture import CaptureError
from fedsyn.experiment.schema import ConfigError
from fedsyn.federation.settings import RunConfigError
from fedsyn.federation.certs import CertificateError
from fedsyn.federation.deployment import DeploymentError
from fedsyn.federation.simulation import FederationError
from fedsyn.models import UnknownModelError
from fedsyn.results import StoreError
from fedsyn.sweep.runner import SweepLockedError

USER_ERRORS = (
    ConfigError,
    StoreError,
    SweepLockedError,
    FederationError,
    DeploymentError,
    CaptureError,
    RunConfigError,
    DatasetNotFoundError,
    UnknownDatasetError,
    UnknownSchemeError,
    UnknownModelError,
    DPIncompatibleModelError,
    CertificateError,
    WeightsFetchError,
)


@pytest.mark.parametrize("error", USER_ERRORS, ids=lambda e: e.__name__)
def test_user_errors_share_one_base(error: type[Exception]) -> None:
    assert issubclass(error, FedsynError)


def test_cli_prints_a_user_error_on_one_line(tmp_path, capsys) -> None:
    capture = tmp_path / "capture"
    capture.mkdir()
    assert main(["attack", str(capture)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedsyn attack: error:") and "is not a capture" in err and err.count("\n") == 1
