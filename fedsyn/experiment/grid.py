"""Grid expansion: one ``Cell`` per (model, trained state, FL/WR/WS combination, defense set)."""

from __future__ import annotations

import hashlib
import itertools
import json

from fedsyn.biomod import BiomodConfig
from fedsyn.defenses import DefenseSet
from fedsyn.strict import StrictModel

from .names import combo_flags
from .schema import AttackSpec, BiomodGrid, ConfigError, DatasetSpec, ExperimentConfig, FederationSpec, ModelSpec, PretrainSpec


def biomod_config(combo: str, grid: BiomodGrid) -> BiomodConfig:
    """The ``BiomodConfig`` of one combination name ("none", "fl+ws", ...) with the grid's hyperparameters."""
    return BiomodConfig(
        **combo_flags(combo),
        grapes=grid.grapes,
        tau=grid.tau,
        d_re=grid.d_re,
        gamma=grid.gamma,
        wr_interval=grid.wr_interval,
        fl_scope=grid.fl_scope,
    )


class Cell(StrictModel):
    """One unit of work of a sweep: a federation, its captures, their attacks and scores."""

    experiment: str
    seed: int
    dataset: DatasetSpec
    model: ModelSpec
    trained: int
    pretrain: PretrainSpec
    combo: str
    biomod: BiomodConfig
    federation: FederationSpec
    defense: DefenseSet
    attack: AttackSpec
    metrics: tuple[str, ...]

    @property
    def key(self) -> str:
        """Content hash of everything that determines the cell's numbers (16 hex digits)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def describe(self) -> str:
        return (
            f"{self.key}  model={self.model.label} trained={self.trained}ep combo={self.combo} "
            f"defense={self.defense.name} clients={self.federation.clients} rounds={self.federation.rounds} "
            f"attackers={','.join(self.attack.attackers)} methods={','.join(self.attack.methods)}"
        )


def expand(config: ExperimentConfig) -> list[Cell]:
    """All cells of ``config`` in a fixed order (models, trained states, grid blocks, combinations, defenses);
    a control model (``ModelSpec.control``) only in the combination ``none``."""
    cells = [
        Cell(
            experiment=config.name,
            seed=config.seed,
            dataset=config.dataset,
            model=model,
            trained=trained,
            pretrain=config.pretrain,
            combo=combo,
            biomod=biomod_config(combo, config.biomod),
            federation=config.federation,
            defense=defense,
            attack=config.attack,
            metrics=config.metrics,
        )
        for model, trained in itertools.product(config.models, config.trained)
        for combos, defenses in config.blocks()
        for combo, defense in itertools.product(combos, defenses)
        if not model.control or combo == "none"
    ]
    keys = [cell.key for cell in cells]
    if len(set(keys)) != len(keys):
        raise ConfigError(
            "the grid contains the same cell twice (check duplicated models, trained states or overlapping grid blocks)"
        )
    return cells
