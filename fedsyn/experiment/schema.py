"""The YAML experiment schema: everything a sweep does is decided here, before any work starts.

An ``ExperimentConfig`` describes a grid; ``fedsyn.experiment.grid.expand`` turns it into ``Cell``s, one per
(seed, model, trained state, FL/WR/WS combination, defense set). Unknown keys and bad values are rejected
with the offending field named (pydantic) and, for closed choices, the allowed values listed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

import attacks
from fedsyn.defenses import DPSGD, DefenseConfig, DefenseSet, SecAgg
from fedsyn.errors import FedsynError
from fedsyn.strict import StrictModel, validate_options

from .names import ATTACKERS, COMBOS, DATASETS, METRICS, MODELS, OPTIONS, PARTITION_SCHEMES, one_of


class ConfigError(FedsynError, ValueError):
    """A config file that cannot be used; the message names the file and every bad field."""


def _checked_options(kind: str, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    """A model's or dataset's ``options`` checked against what its builder or reader accepts (names, types,
    bounds: ``fedsyn.experiment.names.OPTIONS``); left alone when the name itself is invalid."""
    name = info.data.get("name")
    if name is None:
        return options
    return validate_options(OPTIONS[kind][name], options, f"{kind} {name!r}")


class DatasetSpec(StrictModel):
    name: str = "photos"
    root: Path | None = None
    download: bool = False
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return one_of(name, DATASETS, "dataset")

    @field_validator("options")
    @classmethod
    def _options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _checked_options("dataset", options, info)

    @model_validator(mode="after")
    def _imagefolder_needs_root(self) -> "DatasetSpec":
        if self.name == "imagefolder" and self.root is None:
            raise ValueError("dataset.root is required for dataset 'imagefolder'")
        return self


class ModelSpec(StrictModel):
    name: str
    zero_bias: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    control: bool = Field(
        False,
        description="a width-matched control for WS (WS at gamma leaves N/gamma distinct units per layer): the "
        "grid runs this plain model only in the 'none' combination, and its label ends in '-control'",
    )

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return one_of(name, MODELS, "model")

    @field_validator("options")
    @classmethod
    def _options(cls, options: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _checked_options("model", options, info)

    @property
    def label(self) -> str:
        extras = [f"{k}={v}" for k, v in sorted(self.options.items())]
        return "-".join([self.name, *extras, *(["control"] if self.control else [])])


class PartitionSpec(StrictModel):
    scheme: str = "iid"
    alpha: float = Field(0.5, gt=0)
    shards_per_client: int = Field(2, ge=1)

    @field_validator("scheme")
    @classmethod
    def _known(cls, scheme: str) -> str:
        return one_of(scheme, PARTITION_SCHEMES, "partition scheme")


class FederationSpec(StrictModel):
    clients: int = Field(4, ge=1)
    rounds: int = Field(2, ge=1)
    local_steps: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(0.01, gt=0)
    partition: PartitionSpec = PartitionSpec()
    capture: Literal["update", "gradient"] = "update"
    capture_rounds: tuple[int, ...] | None = Field(None, description="rounds to capture; None = all")
    eval_samples: int = Field(512, ge=1, description="held-out test images for the accuracy per round")
    bn_mode: Literal["train", "eval"] = Field(
        "train",
        description="the clients' BatchNorm mode during local training: 'train' normalises with the batch's "
        "statistics, 'eval' with the running statistics of the global model the server sent",
    )
    bn_stats: Literal["defaults", "public"] = Field(
        "defaults",
        description="the running statistics of the model the server sends: 'defaults' as built (or pretrained), "
        "'public' recalibrated on bn_public_samples images of the test split, which no client holds",
    )
    bn_public_samples: int = Field(256, ge=1, description="test images for bn_stats 'public' (a seeded draw)")
    faulty_clients: tuple[int, ...] = Field(
        (),
        description="fault injection for robustness tests: these partition ids reply with NaN arrays every "
        "round, which the server must reject (empty in real experiments)",
    )
    max_update_norm: float | None = Field(
        None,
        gt=0,
        description="the server rejects a reply whose L2 norm (all floating-point arrays together) exceeds "
        "this; None: no bound",
    )

    @model_validator(mode="after")
    def _rounds_exist(self) -> "FederationSpec":
        for r in self.capture_rounds or ():
            if not 1 <= r <= self.rounds:
                raise ValueError(f"federation.capture_rounds: round {r} is not in 1..{self.rounds}")
        bad = [c for c in self.faulty_clients if not 0 <= c < self.clients]
        if bad:
            raise ValueError(f"federation.faulty_clients {bad} not in 0..{self.clients - 1}")
        if self.capture == "gradient" and self.local_steps != 1:
            raise ValueError(
                f"federation.capture 'gradient' sends the gradient of one batch, so local_steps must be 1 "
                f"(got {self.local_steps}); use capture 'update' for several local steps"
            )
        return self


class BiomodGrid(StrictModel):
    """Which FL/WR/WS combinations to run, and the methods' hyperparameters (docs/methods.md defaults)."""

    combos: Literal["all"] | tuple[str, ...] = "all"
    tau: float = Field(0.09, gt=0, lt=2)
    d_re: float = Field(14.0, gt=0)
    gamma: int = Field(2, ge=1)
    wr_interval: int = Field(1, ge=1)
    fl_scope: Literal["private", "shared"] = "private"
    grapes: bool = False

    @field_validator("combos")
    @classmethod
    def _known_combos(cls, combos: str | tuple[str, ...]) -> str | tuple[str, ...]:
        return _check_combos(combos)

    def combo_names(self) -> tuple[str, ...]:
        return COMBOS if self.combos == "all" else tuple(self.combos)


def _check_combos(combos: str | tuple[str, ...]) -> str | tuple[str, ...]:
    if combos == "all":
        return combos
    for combo in combos:
        if combo not in COMBOS:
            raise ValueError(f"unknown combination {combo!r}; allowed: all, {', '.join(COMBOS)}")
    if len(set(combos)) != len(combos):
        raise ValueError("combinations are listed twice")
    return combos


class GridBlock(StrictModel):
    """One block of the grid: these combinations crossed with these defense sets (named in ``defenses``).

    ``all`` means ``biomod.combos`` / every defense set. A config with blocks runs their union instead of
    the full product, e.g. every combination without defense plus every defense on the plain model.
    """

    combos: Literal["all"] | tuple[str, ...] = "all"
    defenses: Literal["all"] | tuple[str, ...] = "all"
    attack: dict[str, Any] = Field(
        default_factory=dict,
        description="attack settings that replace the experiment's in this block's cells (nested keys merge), "
        "e.g. {active: null, methods: [inverting-gradients]}: a passive server's cells beside an active one's",
    )

    @field_validator("combos")
    @classmethod
    def _known_combos(cls, combos: str | tuple[str, ...]) -> str | tuple[str, ...]:
        return _check_combos(combos)


class PretrainSpec(StrictModel):
    """Centralised training of the (converted) model before the federation: the 'trained' state."""

    lr: float = Field(0.01, gt=0)
    batch_size: int = Field(128, ge=1)
    max_samples: int | None = Field(None, ge=1, description="cap on training images per epoch")


Design = Literal["oblivious", "informed"]


class ActiveSpec(StrictModel):
    """The active malicious server: in round ``round`` it sends the model wrapped in an imprint block
    (Fowl et al. 2022, ``fedsyn.models.imprint``) instead of the plain one; the next round goes on with
    the plain model again.

    ``designs``: the block is designed for a plain model (``oblivious``: one row per threshold, no WS
    structure) or for the clients' public biomod settings (``informed``: ``ws_gamma`` = the WS factor,
    ``copies`` rows per threshold against FL). Each design is a federation of its own: the grid gives a
    cell per design (``fedsyn.experiment.grid.expand``; without FL and WS the two designs coincide and
    only the oblivious cell runs). Thresholds are the quantiles of the statistic
    over ``public_images`` test images that no client evaluates on (``fedsyn.task.active``).
    """

    type: Literal["imprint"] = "imprint"
    round: int = Field(1, ge=1, description="the round whose model the server modifies")
    designs: tuple[Design, ...] = Field(("informed",), min_length=1)
    public_images: int = Field(1000, ge=2, description="held-out test images the thresholds come from")
    bins: int = Field(128, ge=2)
    statistic: Literal["brightness", "random"] = "brightness"
    copies: int = Field(4, ge=1, description="rows per threshold of the informed design against FL")
    alpha: float = Field(0.3, gt=0)
    output_scale: float = Field(1e-3, gt=0)

    @field_validator("designs")
    @classmethod
    def _distinct_designs(cls, designs: tuple[str, ...]) -> tuple[str, ...]:
        return _distinct(designs, "attack.active.designs")


class AttackSpec(StrictModel):
    """Who attacks what, and with which inversion settings (``inversion`` is ``attacks.AttackConfig``).

    ``active``: the server modifies the model of one round (None: a passive server)."""

    attackers: tuple[str, ...] = ("oblivious",)
    methods: tuple[str, ...] = (attacks.DEFAULT_METHOD,)
    labels: Literal["known", "recovered"] = "known"
    clients: Literal["all"] | tuple[int, ...] = "all"
    rounds: tuple[int, ...] = (1,)
    inversion: attacks.AttackConfig = attacks.AttackConfig()
    active: ActiveSpec | None = None

    @field_validator("attackers")
    @classmethod
    def _known_attackers(cls, attackers: tuple[str, ...]) -> tuple[str, ...]:
        return _distinct(tuple(one_of(name, ATTACKERS, "attacker") for name in attackers), "attack.attackers")

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        """Every name a key of ``attacks.METHODS`` (the attack suite's registry), at least one."""
        known = tuple(attacks.METHODS)
        if not methods:
            raise ValueError(f"name at least one attack method; allowed: {', '.join(known)}")
        return _distinct(tuple(one_of(name, known, "attack method") for name in methods), "attack.methods")


def _distinct(names: tuple[str, ...], field: str) -> tuple[str, ...]:
    if len(set(names)) != len(names):
        raise ValueError(f"{field} lists a name twice: {list(names)}")
    return names


def _defense_set(item: Any) -> Any:
    """YAML shorthands: ``none``; a bare list of defense steps; or ``{name:, steps:}``."""
    if item == "none" or item is None:
        return {"name": "none", "steps": []}
    if isinstance(item, list):
        name = "+".join(str(step.get("type", "?")) if isinstance(step, dict) else str(step) for step in item)
        return {"name": name or "none", "steps": item}
    if isinstance(item, dict) and "type" in item:
        return {"name": item["type"], "steps": [item]}
    return item


class ExperimentConfig(StrictModel):
    """A whole experiment. ``seeds`` repeats the grid once per seed (``seed: N`` is the one-seed shorthand):
    every cell of a seed sees the same client partitions, batches and initial weights whatever its
    combination or defense, so the repeats pair up across a table's rows."""

    name: str = "experiment"
    seeds: tuple[int, ...] = Field((0,), min_length=1, description="one repeat of the grid per seed")
    dataset: DatasetSpec = DatasetSpec()
    models: tuple[ModelSpec, ...] = Field(min_length=1)
    federation: FederationSpec = FederationSpec()
    biomod: BiomodGrid = BiomodGrid()
    trained: tuple[int, ...] = Field((0,), min_length=1, description="pretraining epochs, one cell each")
    pretrain: PretrainSpec = PretrainSpec()
    defenses: tuple[DefenseSet, ...] = Field((DefenseSet(),), min_length=1)
    grid: tuple[GridBlock, ...] = Field((), description="blocks of (combos x defenses); empty: the full product")
    attack: AttackSpec = AttackSpec()
    metrics: tuple[str, ...] = METRICS

    @model_validator(mode="before")
    @classmethod
    def _one_seed(cls, data: Any) -> Any:
        """``seed: N`` (configs written before repeats) means ``seeds: [N]``."""
        if isinstance(data, dict) and "seed" in data:
            if "seeds" in data:
                raise ValueError("give either seed (one) or seeds (a list), not both")
            data = dict(data)
            data["seeds"] = [data.pop("seed")]
        return data

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if any(seed < 0 for seed in seeds):
            raise ValueError(f"seeds must be >= 0, got {list(seeds)}")
        return _distinct(seeds, "seeds")

    @model_validator(mode="before")
    @classmethod
    def _attack_bn_mode_follows_clients(cls, data: Any) -> Any:
        """Without an explicit ``attack.inversion.bn_mode`` the attack runs BatchNorm in the clients' mode
        (``federation.bn_mode``); an explicit one is kept, a mismatch on purpose that every row records."""
        if not isinstance(data, dict):
            return data
        federation = data.get("federation") or {}
        attack = data.get("attack") or {}
        inversion = attack.get("inversion") if isinstance(attack, dict) else None
        if not isinstance(federation, dict) or not isinstance(attack, dict):
            return data
        if inversion is None or isinstance(inversion, dict) and "bn_mode" not in inversion:
            clients = federation.get("bn_mode", FederationSpec.model_fields["bn_mode"].default)
            return {**data, "attack": {**attack, "inversion": {**(inversion or {}), "bn_mode": clients}}}
        return data

    @field_validator("models", mode="before")
    @classmethod
    def _model_shorthand(cls, models: Any) -> Any:
        if isinstance(models, (str, dict)):
            models = [models]
        return [{"name": m} if isinstance(m, str) else m for m in models]

    @field_validator("defenses", mode="before")
    @classmethod
    def _defense_shorthand(cls, defenses: Any) -> Any:
        if not isinstance(defenses, (list, tuple)):
            defenses = [defenses]
        return [_defense_set(item) for item in defenses]

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(one_of(name, METRICS, "metric") for name in metrics)

    @field_validator("trained")
    @classmethod
    def _epochs(cls, trained: tuple[int, ...]) -> tuple[int, ...]:
        if any(e < 0 for e in trained):
            raise ValueError("pretraining epochs must be >= 0")
        return trained

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentConfig":
        self._check_attack(self.attack, "attack")
        wr_combos = [combo for combo in self.biomod.combo_names() if "wr" in combo.split("+")]
        if wr_combos and self.biomod.wr_interval > self.federation.local_steps:
            raise ValueError(
                f"biomod.wr_interval ({self.biomod.wr_interval}) exceeds federation.local_steps "
                f"({self.federation.local_steps}): WR counts the optimizer steps of one round, so it would never "
                f"run in {', '.join(wr_combos)}; use a wr_interval of at most local_steps"
            )
        names = [d.name for d in self.defenses]
        if len(set(names)) != len(names):
            raise ValueError(f"defense set names must be unique, got {names}")
        for defense in self.defenses:
            secagg = defense.find(SecAgg)
            if secagg is not None:
                secagg.check_clients(self.federation.clients)
            if self.federation.capture == "gradient" and defense.find(DPSGD) is not None:
                raise ValueError(
                    f"defenses: set {defense.name!r} has 'dpsgd', which is not supported with "
                    "federation.capture 'gradient' (DP-SGD acts on the local steps); use capture 'update'"
                )
        for index, block in enumerate(self.grid):
            unknown = [] if block.defenses == "all" else [n for n in block.defenses if n not in names]
            if unknown:
                raise ValueError(f"grid.{index}.defenses: unknown defense set(s) {unknown}; defined: {', '.join(names)}")
            self._check_attack(self.block_attack(index), f"grid.{index}.attack")
        return self

    def _check_attack(self, attack: AttackSpec, field: str) -> None:
        """What an attack spec asks of the federation: its clients, rounds and modified round exist."""
        clients = attack.clients
        if clients != "all":
            bad = [c for c in clients if not 0 <= c < self.federation.clients]
            if bad:
                raise ValueError(f"{field}.clients {bad} not in 0..{self.federation.clients - 1}")
        bad_rounds = [r for r in attack.rounds if not 1 <= r <= self.federation.rounds]
        if bad_rounds:
            raise ValueError(f"{field}.rounds {bad_rounds} not in 1..{self.federation.rounds}")
        active = attack.active
        if active is not None:
            if active.round not in attack.rounds:
                raise ValueError(f"{field}.active.round {active.round} is not among {field}.rounds {list(attack.rounds)}")
            if self.federation.capture_rounds is not None and active.round not in self.federation.capture_rounds:
                raise ValueError(f"{field}.active.round {active.round} is not among federation.capture_rounds")

    def block_attack(self, index: int) -> AttackSpec:
        """The attack spec of grid block ``index``: the experiment's, with the block's ``attack`` fields merged
        in (a nested mapping such as ``inversion`` merges key by key) and validated again as a whole."""
        overrides = self.grid[index].attack if self.grid else {}
        if not overrides:
            return self.attack
        merged = _merged(self.attack.model_dump(mode="json"), overrides)
        try:
            spec = AttackSpec.model_validate(merged)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in err.errors()
            )
            raise ValueError(f"grid.{index}.attack: {problems}") from None
        return spec

    def blocks(self) -> list[tuple[tuple[str, ...], tuple[DefenseSet, ...], AttackSpec]]:
        """The grid's (combinations, defense sets, attack spec) blocks; without ``grid``, one block of
        everything under the experiment's attack spec."""
        by_name = {defense.name: defense for defense in self.defenses}
        result = []
        for index, block in enumerate(self.grid or (GridBlock(),)):
            combos = self.biomod.combo_names() if block.combos == "all" else tuple(block.combos)
            names = tuple(by_name) if block.defenses == "all" else block.defenses
            result.append((combos, tuple(by_name[name] for name in names), self.block_attack(index)))
        return result


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it; where both hold a mapping under one key, they merge."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per bad field. A list whose item failed is also reported by pydantic as too short (the
    failed item does not count); that echo is left out, the item's own error says it all."""
    locations = [tuple(item["loc"]) for item in err.errors()]

    def echo(item: Any) -> bool:
        where = tuple(item["loc"])
        return item["type"] == "too_short" and any(len(loc) > len(where) and loc[: len(where)] == where for loc in locations)

    errors = [item for item in err.errors() if not echo(item)]
    lines = [f"{source}: {len(errors)} invalid field(s)"]
    for item in errors:
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "config") -> ExperimentConfig:
    """Validate a mapping (e.g. parsed YAML) into an ``ExperimentConfig`` or raise ``ConfigError``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(data: Any, source: str = "config", where: str = "") -> Any:
    """Replace every ``${NAME}`` in the string values of ``data`` with the environment variable ``NAME``.

    This lets a shared config point at machine-specific folders (``root: ${FEDSYN_CIFAR10_DIR}``). An unset
    or empty variable is an error naming the field, so a sweep never starts on a half-filled path.
    """
    if isinstance(data, dict):
        return {key: expand_env(value, source, f"{where}.{key}" if where else str(key)) for key, value in data.items()}
    if isinstance(data, list):
        return [expand_env(item, source, f"{where}.{index}") for index, item in enumerate(data)]
    if isinstance(data, str):

        def lookup(match: re.Match[str]) -> str:
            value = os.environ.get(match.group(1))
            if not value:
                raise ConfigError(
                    f"{source}: {where or '(top level)'}: environment variable {match.group(1)} is not set "
                    f"(the field refers to it as ${{{match.group(1)}}}); set it or write the value in the file"
                )
            return value

        return _ENV_REFERENCE.sub(lookup, data)
    return data


def load_config(path: str | Path) -> ExperimentConfig:
    """Read a YAML experiment file, expand ``${NAME}`` environment references (see ``expand_env``), validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    return parse_config(expand_env(data, str(path)), str(path))


__all__ = [
    "ActiveSpec",
    "AttackSpec",
    "BiomodGrid",
    "ConfigError",
    "DatasetSpec",
    "DefenseConfig",
    "DefenseSet",
    "ExperimentConfig",
    "FederationSpec",
    "GridBlock",
    "ModelSpec",
    "PartitionSpec",
    "PretrainSpec",
    "expand_env",
    "load_config",
    "parse_config",
]
