import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import special, stats
from torch import nn

from fedsyn.biomod import BiomodConfig, attach, convert, rejuvenate
from fedsyn.biomod.rejuvenation import redraw_everywhere
from fedsyn.biomod.wr_kernel import MIN_PART, part_starts, pass_keys, redraw_cpu

SIDE = 1024  # a 1024 x 1024 layer: 2**20 weights
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def layer_with_magnitudes(d_re: float, low: float, high: float, seed: int = 0) -> tuple[nn.Module, np.ndarray]:
    """A converted WR layer whose |w| / sigma_re are spread evenly over [low, high] with random signs.

    One weight sits at |w| = d_re so that w_max = d_re and sigma_re = 1 exactly.
    """
    rng = np.random.default_rng(seed)
    a = rng.uniform(low, high, SIDE * SIDE)
    a[0] = d_re
    weights = a * rng.choice([-1.0, 1.0], a.size)
    plain = nn.Sequential(nn.Linear(SIDE, SIDE), nn.Linear(SIDE, 2))
    with torch.no_grad():
        plain[0].weight.copy_(torch.from_numpy(weights.reshape(SIDE, SIDE)))
    model = convert(plain, BiomodConfig(wr=True, d_re=d_re), seed=seed)
    return model, np.abs(weights.astype(np.float32)).astype(np.float64)


def redraw_mask(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    before = model[0].weight.detach().clone()
    counts = rejuvenate(model)
    after = model[0].weight.detach()
    changed = (after != before).flatten().numpy()
    assert counts["0"] == changed.sum()
    return changed, after.flatten().numpy()[changed]


@pytest.mark.parametrize(
    "d_re,low,high,edges",
    [
        (6.0, 0.0, 6.0, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 2.66, 3.0, 4.0, 6.0]),
        # only the sparse path: every weight has P_re < 2**-8
        (3.5, 2.7, 3.5, [2.7, 2.8, 2.9, 3.0, 3.2, 3.5]),
    ],
)
def test_redraw_frequency_per_magnitude_bucket_matches_one_minus_phi(
    d_re: float, low: float, high: float, edges: list[float]
) -> None:
    model, a = layer_with_magnitudes(d_re, low, high)
    changed, _ = redraw_mask(model)
    probability = special.ndtr(-a)  # sigma_re = 1
    bucket = np.digitize(a, edges[1:-1])
    for b in range(len(edges) - 1):
        members = bucket == b
        expected = probability[members].sum()
        spread = math.sqrt((probability[members] * (1 - probability[members])).sum())
        observed = changed[members].sum()
        assert abs(observed - expected) <= 5 * spread + 2, (edges[b], observed, expected)


def test_redrawn_values_follow_the_layers_default_init_distribution() -> None:
    model, _ = layer_with_magnitudes(6.0, 0.0, 6.0)
    _, values = redraw_mask(model)
    bound = 1 / math.sqrt(SIDE)  # kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert values.size > 10_000
    assert np.abs(values).max() <= bound
    assert stats.kstest(values, stats.uniform(loc=-bound, scale=2 * bound).cdf).pvalue > 1e-4


def test_conv_layers_redraw_from_their_own_fan_in() -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(8, 16, 3), nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        plain[0].weight.mul_(10.0)  # far outside the init range, so re-drawn entries stand out
    model = convert(plain, BiomodConfig(wr=True, d_re=2.0), seed=0)
    before = model[0].weight.detach().clone()
    count = rejuvenate(model)["0"]
    changed = model[0].weight.detach() != before
    assert count == changed.sum() > 0
    assert model[0].weight.detach()[changed].abs().max() <= 1 / math.sqrt(8 * 9)


def test_same_seed_same_redraws_other_seed_other_redraws() -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 2))
    config = BiomodConfig(wr=True, d_re=3.0)
    first, again, other = (convert(plain, config, seed=s) for s in (5, 5, 6))
    for model in (first, again, other):
        rejuvenate(model)
    assert torch.equal(first[0].weight, again[0].weight)
    assert not torch.equal(first[0].weight, other[0].weight)


def test_attach_rejuvenates_every_interval_steps_and_counts_and_leaves_biases() -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    model = convert(plain, BiomodConfig(wr=True, d_re=2.0, wr_interval=2), seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # weights move only by WR
    handle = attach(optimizer, model)
    x, y = torch.randn(4, 32), torch.randint(0, 4, (4,))
    snapshots = []
    for _ in range(4):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        changed = sum(int((model.state_dict()[k] != snapshots[-1][k]).sum()) for k in snapshots[-1])
        assert changed == handle.rejuvenated_last or handle.steps % 2 == 1
        if handle.steps % 2 == 1:
            assert changed == 0
        assert torch.equal(model[0].bias, plain[0].bias) and torch.equal(model[2].bias, plain[2].bias)
    assert handle.steps == 4 and handle.rejuvenated_last > 0
    assert set(handle.rejuvenated_by_layer) == {"0", "2"}
    assert handle.rejuvenated_total >= handle.rejuvenated_last
    handle.remove()
    before = model[0].weight.detach().clone()
    optimizer.step()
    optimizer.step()
    assert torch.equal(model[0].weight, before)


def test_redraws_do_not_depend_on_the_thread_count() -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(2100, SIDE), nn.Linear(SIDE, 2))  # 2.15M weights: three chunks
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            model = convert(plain, BiomodConfig(wr=True), seed=4)
            rejuvenate(model)
            results.append(model[0].weight.detach())
    finally:
        torch.set_num_threads(threads)
    assert not torch.equal(results[0], plain[0].weight)
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


def _oracle_hash(index: np.ndarray, keys: np.ndarray, stream: int) -> np.ndarray:
    """The kernel's keyed 32-bit hash, in NumPy: an independent statement of the draws."""

    def one_round(x: np.ndarray) -> np.ndarray:
        mask = np.uint64(0xFFFFFFFF)
        x = x ^ (x >> np.uint64(16))
        x = (x * np.uint64(0x7FEB352D)) & mask
        x = x ^ (x >> np.uint64(15))
        x = (x * np.uint64(0x846CA68B)) & mask
        return x ^ (x >> np.uint64(16))

    keys = keys.astype(np.uint64)
    return one_round(one_round(index.astype(np.uint64) ^ keys[2 * stream]) ^ keys[2 * stream + 1])


@pytest.mark.parametrize(("dtype", "threads"), [(torch.float32, 1), (torch.float64, 1), (torch.float32, 3)])
def test_the_cpu_kernel_decides_every_weight_exactly_as_u_below_p_re(dtype: torch.dtype, threads: int) -> None:
    """The kernel's shortcuts (the bound on P_re, the 24-bit first look at u, the bucket table) and its
    split into parts on several threads change no decision: its re-draws are exactly
    {i : u_i < 1 - Phi(|w_i| / sigma)} with u_i from its hash streams, and a re-drawn weight gets
    exactly v_i mapped onto the init range."""
    size, sigma, bound, seed = 3 * MIN_PART + 4321, 0.01, 0.05, 1234
    assert len(part_starts(size, threads)) == threads
    weights = torch.empty(size, dtype=dtype).uniform_(-0.14, 0.14, generator=torch.Generator().manual_seed(1))
    flat = weights.clone()
    count = redraw_cpu(flat, sigma, bound, seed, threads=threads)
    index, keys = np.arange(size), pass_keys(seed)
    u = (_oracle_hash(index, keys, 0) + (_oracle_hash(index, keys, 1) >> np.uint64(11)) * 2.0**-21) * 2.0**-32
    a = weights.double().abs().numpy() / sigma
    expected = u < 0.5 * special.erfc(a / math.sqrt(2.0))
    changed = (flat != weights).numpy()
    assert count == expected.sum() == changed.sum() and np.array_equal(changed, expected)
    v = (_oracle_hash(index, keys, 2) * 2.0**21 + (_oracle_hash(index, keys, 3) >> np.uint64(11))) * 2.0**-53
    fresh = torch.from_numpy((2.0 * v - 1.0) * bound).to(dtype)
    assert torch.equal(flat[torch.from_numpy(expected)], fresh[torch.from_numpy(expected)])
    assert 0.5 * size * 0.01 < count < size  # a weight range of 14 sigma: a few percent re-drawn


def test_float64_weights_rejuvenate_in_place() -> None:
    model, _ = layer_with_magnitudes(6.0, 0.0, 6.0)
    model = model.double()
    storage = model[0].weight.data_ptr()
    changed, values = redraw_mask(model)
    assert model[0].weight.dtype == torch.float64 and model[0].weight.data_ptr() == storage
    assert changed.sum() > 10_000 and np.abs(values).max() <= 1 / math.sqrt(SIDE)


@CUDA
def test_cuda_weights_rejuvenate_on_the_device_with_the_same_law_and_seeding() -> None:
    d_re = 6.0
    model, a = layer_with_magnitudes(d_re, 0.0, 6.0)
    twin = copy.deepcopy(model)
    model, twin = model.cuda(), twin.cuda()
    before = model[0].weight.detach().clone()
    counts = rejuvenate(model)
    rejuvenate(twin)
    after = model[0].weight.detach()
    assert after.is_cuda and torch.equal(after, twin[0].weight)
    changed = (after != before).flatten().cpu().numpy()
    assert counts["0"] == changed.sum()
    assert_frequencies_follow_one_minus_phi(changed, a, [0.0, 1.0, 2.66, 6.0])
    values = after.flatten()[torch.from_numpy(changed).cuda()].cpu().numpy()
    assert np.abs(values).max() <= 1 / math.sqrt(SIDE)


def assert_frequencies_follow_one_minus_phi(changed: np.ndarray, a: np.ndarray, edges: list[float]) -> None:
    """Per bucket of ``a = |w| / sigma_re``, the re-drawn count is within 5 sd of sum(1 - Phi(a))."""
    probability = special.ndtr(-a)
    bucket = np.digitize(a, edges[1:-1])
    for b in range(len(edges) - 1):
        members = bucket == b
        expected = probability[members].sum()
        spread = math.sqrt((probability[members] * (1 - probability[members])).sum())
        assert abs(changed[members].sum() - expected) <= 5 * spread + 2, (edges[b], changed[members].sum(), expected)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_the_accelerator_pass_redraws_with_one_minus_phi_from_the_init_range(device: str) -> None:
    model, a = layer_with_magnitudes(6.0, 0.0, 6.0)
    flat = model[0].weight.detach().reshape(-1).to(device)
    before = flat.clone()
    sigma = torch.tensor(1.0, dtype=torch.float64, device=device)
    bound = 1 / math.sqrt(SIDE)
    count = redraw_everywhere(flat, sigma, bound, torch.Generator(device=device).manual_seed(0))
    changed = (flat != before).cpu().numpy()
    assert int(count) == changed.sum()
    assert_frequencies_follow_one_minus_phi(changed, a, [0.0, 0.5, 1.0, 2.0, 2.66, 3.0, 4.0, 6.0])
    assert float(flat[torch.from_numpy(changed).to(device)].abs().max()) <= bound


def test_the_cpu_pass_leaves_torchs_thread_count_alone() -> None:
    """A client sets one torch thread; a WR pass between two of its steps must not change that (numba's
    parallel layer once did, through the OpenMP runtime it shares with torch), not even when the pass
    itself is told to run on two threads."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        redraw_cpu(torch.empty(40_000).uniform_(-0.1, 0.1), 0.01, 0.05, 3)
        assert torch.get_num_threads() == 1
        redraw_cpu(torch.empty(2 * MIN_PART).uniform_(-0.1, 0.1), 0.01, 0.05, 3, threads=2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
