"""LPIPS (AlexNet, v0.1) built offline from a local copy of torchvision's AlexNet weights.

`lpips.LPIPS(net="alex")` asks torchvision for the ImageNet AlexNet, which downloads it. We never let it:
the LPIPS module is built with a random trunk (`pnet_rand=True`; its calibrated linear layers ship inside
the `lpips` wheel), and the trunk's weights are then loaded from a file on disk, by default torchvision's
own cache entry `<torch.hub.get_dir()>/checkpoints/alexnet-owt-7be5be79.pth`. When no file can be loaded
the caller gets `LpipsUnavailable` with the reason; a random trunk is never used for scoring.

`fetch_backbone()` is the only download, run on request (`fedsyn fetch-weights`): torchvision's own loader
puts the file into that cache entry, checking its SHA-256 prefix.
"""

from __future__ import annotations

import functools
import os
import urllib.error
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import lpips

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"

# AlexNet's first convolution (11x11, stride 4, padding 2) shrinks a side s to floor((s - 7) / 4) + 1, and
# two 3x3 stride-2 max pools follow, each needing at least 3 pixels: the smallest side that works is 31.
MIN_SIDE = 31


class LpipsUnavailable(RuntimeError):
    """LPIPS cannot be computed; the message says why and how to fix it."""


class BackboneFetchError(RuntimeError):
    """The AlexNet backbone could not be downloaded or read back; the message says why and what to do."""


def default_backbone_path() -> Path:
    """Where torchvision caches the ImageNet AlexNet (honours $TORCH_HOME, read at call time)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def _how_to_provide(path: Path) -> str:
    return (
        f"copy torchvision's ImageNet AlexNet weights ({ALEXNET_URL}) to {default_backbone_path()} "
        f"(the torch hub cache, set by $TORCH_HOME), or pass lpips=PATH to a file holding them; "
        f"looked for {path}"
    )


def lpips_model(path: str | os.PathLike[str], device: torch.device) -> lpips.LPIPS:
    """The LPIPS(alex, v0.1) module with its AlexNet trunk read from `path`, on `device`, in eval mode.

    Built once per (path, file modification time, device) and reused. Raises `LpipsUnavailable` when the
    file is absent or is not a torchvision AlexNet state dict.
    """
    resolved = Path(path).expanduser().resolve()
    try:
        modified = resolved.stat().st_mtime_ns
    except OSError as exc:
        raise LpipsUnavailable(
            f"LPIPS needs the AlexNet backbone weights, which are not downloaded at run time: "
            f"{exc.strerror}; {_how_to_provide(resolved)}"
        ) from None
    return _build(str(resolved), modified, str(torch.device(device)))


@functools.lru_cache(maxsize=4)
def _build(path: str, modified_ns: int, device: str) -> lpips.LPIPS:
    del modified_ns  # only part of the cache key, so that a replaced file is read again
    import lpips  # imports all of torchvision: only paid when LPIPS is actually computed
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is reported the same way
        raise LpipsUnavailable(f"could not read the AlexNet backbone file: {exc}; {_how_to_provide(Path(path))}") from exc

    # Building with a random trunk draws from the global RNG; fork it so scoring never shifts the
    # random stream of the experiment around it. torchvision warns that `pretrained=False` is deprecated.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)

    # The trunk's stages keep torchvision's module indices: "slice2.3.weight" is "features.3.weight".
    trunk = {}
    for name in model.net.state_dict():
        source = "features." + name.split(".", 1)[1]
        if not isinstance(state, dict) or source not in state:
            raise LpipsUnavailable(
                f"{path} is not a torchvision AlexNet state dict (no key {source!r}); {_how_to_provide(Path(path))}"
            )
        trunk[name] = state[source]
    try:
        model.net.load_state_dict(trunk, strict=True)
    except RuntimeError as exc:
        raise LpipsUnavailable(f"{path} does not fit torchvision's AlexNet: {exc}") from exc

    model.requires_grad_(False)
    return model.to(device).eval()


def lpips_distances(model: lpips.LPIPS, rec: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Per-image LPIPS between paired batches (B, C, H, W) in [0, 1]; returns float64 (B,) on the CPU.

    Inputs are scaled to [-1, 1] as LPIPS expects; grayscale images are repeated to three channels.
    Raises `LpipsUnavailable` for channel counts other than 1 or 3 and for images too small for AlexNet.
    """
    channels, height, width = rec.shape[1:]
    if channels not in (1, 3):
        raise LpipsUnavailable(f"LPIPS is defined for RGB or grayscale images; got {channels} channels")
    if min(height, width) < MIN_SIDE:
        raise LpipsUnavailable(
            f"LPIPS' AlexNet needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels; got {height}x{width}"
        )
    device = next(model.parameters()).device
    rec, true = (x.to(device=device, dtype=torch.float32).expand(-1, 3, -1, -1) * 2 - 1 for x in (rec, true))
    with torch.inference_mode():
        return model(rec, true).flatten().double().cpu()


def fetch_backbone(*, progress: bool = True) -> Path:
    """Download torchvision's ImageNet AlexNet into the torch hub cache, unless it is there; return its path.

    The file lands at `default_backbone_path()`, where `lpips_model` looks by default, through torchvision's
    loader (`AlexNet_Weights.IMAGENET1K_V1`, hash-checked). A file already in the cache is not downloaded
    again; either way it is then loaded as LPIPS will load it. Raises `BackboneFetchError` when the download
    fails (offline, blocked, wrong hash) or the cached file is not usable, saying why.
    """
    from torchvision.models import AlexNet_Weights

    weights = AlexNet_Weights.IMAGENET1K_V1
    target = default_backbone_path()
    if weights.url != ALEXNET_URL:
        raise BackboneFetchError(
            f"torchvision now serves AlexNet from {weights.url}, not {ALEXNET_URL} which fedsyn's LPIPS reads; "
            f"update attacks.lpips_backbone.ALEXNET_FILE"
        )
    if not target.is_file():
        try:
            weights.get_state_dict(progress=progress, check_hash=True)
        except urllib.error.HTTPError as exc:
            raise BackboneFetchError(
                f"could not download the LPIPS AlexNet backbone: {ALEXNET_URL} answered HTTP {exc.code} {exc.reason}"
            ) from exc
        except urllib.error.URLError as exc:
            raise BackboneFetchError(
                f"could not download the LPIPS AlexNet backbone from {ALEXNET_URL}: {exc.reason}. This machine "
                f"seems to be offline or cannot reach download.pytorch.org; download that file on a machine "
                f"with internet and copy it to {target} (the torch hub cache, set by $TORCH_HOME)"
            ) from exc
        except (OSError, RuntimeError) as exc:  # a full disk, an unwritable cache, a hash mismatch
            raise BackboneFetchError(f"could not store the LPIPS AlexNet backbone at {target}: {exc}") from exc
    try:
        lpips_model(target, torch.device("cpu"))
    except LpipsUnavailable as exc:
        raise BackboneFetchError(f"{target} is in the cache but unusable; delete it and fetch again. {exc}") from exc
    return target
