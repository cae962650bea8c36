"""The `fedsyn` commands that wrap a library call: fetch-weights and certs give exit status 0 on success and
one error line with status 2 when the user has to act."""

from __future__ import annotations

import pytest
import torch
import torchvision

from attacks import lpips_backbone
from fedsyn.cli import USER_ERROR, main
from fedsyn.federation.certs import CA_CERT, SERVER_CERT, supernode_key


def error_lines(err: str, command: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"fedsyn {command}: error:")]


def test_fetch_weights_offline_is_one_line_and_non_zero(empty_torch_home, unreachable_network, capsys) -> None:
    assert main(["fetch-weights", "--quiet"]) == USER_ERROR
    err = capsys.readouterr().err
    (line,) = error_lines(err, "fetch-weights")
    assert "offline" in line and lpips_backbone.ALEXNET_URL in line and "Traceback" not in err
    assert not lpips_backbone.default_backbone_path().exists()


def test_fetch_weights_with_the_file_in_the_cache_says_where(empty_torch_home, unreachable_network, capsys) -> None:
    target = lpips_backbone.default_backbone_path()
    target.parent.mkdir(parents=True)
    torch.manual_seed(5)
    state = torchvision.models.alexnet(weights=None).state_dict()
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    torch.save(features, target)
    assert main(["fetch-weights", "--quiet"]) == 0
    assert str(target) in capsys.readouterr().out

    target.write_bytes(b"not a state dict")
    assert main(["fetch-weights", "--quiet"]) == USER_ERROR
    (line,) = error_lines(capsys.readouterr().err, "fetch-weights")
    assert "unusable; delete it and fetch again" in line


def test_certs_writes_the_folder_and_refuses_to_overwrite(tmp_path, capsys) -> None:
    folder = tmp_path / "certs"
    assert main(["certs", str(folder), "--supernodes", "1", "--host", "lab.example"]) == 0
    assert all((folder / name).is_file() for name in (CA_CERT, SERVER_CERT, supernode_key(1)))
    assert "lab.example" in capsys.readouterr().out
    before = (folder / CA_CERT).read_bytes()

    assert main(["certs", str(folder), "--supernodes", "1"]) == USER_ERROR
    (line,) = error_lines(capsys.readouterr().err, "certs")
    assert "already holds" in line and "--overwrite" in line
    assert (folder / CA_CERT).read_bytes() == before


@pytest.mark.parametrize(
    ("option", "field"), [(["--supernodes", "0"], "supernodes"), (["--host", "bad name"], "hosts")]
)
def test_certs_bad_plan_names_the_field(tmp_path, capsys, option, field) -> None:
    assert main(["certs", str(tmp_path / "certs"), *option]) == USER_ERROR
    (line,) = error_lines(capsys.readouterr().err, "certs")
    assert line.startswith(f"fedsyn certs: error: {field}")
    assert not (tmp_path / "certs").exists()
