"""Grid expansion: one ``Cell`` per (seed, model, trained state, FL/WR/WS combination, defense set).

The seed is the outermost dimension: a sweep runs the whole grid of the first seed before the next, so
an interrupted sweep already holds complete, paired tables. A cell's label in the report (model,
trained state, combination, defense) leaves the seed out, so the report pools a combination's seeds.
"""

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
        active = self.attack.active
        design = f" active={active.type}/{active.designs[0]}" if active is not None else ""
        return (
            f"{self.key}  seed={self.seed} model={self.model.label} trained={self.trained}ep combo={self.combo}{design} "
            f"defense={self.defense.name} clients={self.federation.clients} rounds={self.federation.rounds} "
            f"attackers={','.join(self.attack.attackers)} methods={','.join(self.attack.methods)}"
        )


def attack_variants(attack: AttackSpec, biomod: BiomodConfig) -> list[AttackSpec]:
    """The attack spec of each cell: one per design of an active server (each design is a federation
    of its own), else the spec itself. Without FL and WS the informed design is the oblivious one
    (``fedsyn.task.active.imprint_design``), so when both are listed only the oblivious cell runs."""
    if attack.active is None:
        return [attack]
    designs = attack.active.designs
    if not (biomod.fl or biomod.ws) and "oblivious" in designs:
        designs = ("oblivious",)
    return [
        attack.model_copy(update={"active": attack.active.model_copy(update={"designs": (design,)})})
        for design in designs
    ]


def expand(config: ExperimentConfig) -> list[Cell]:
    """All cells of ``config`` in a fixed order (seeds, models, trained states, grid blocks, combinations,
    defenses); a control model (``ModelSpec.control``) only in the combination ``none``."""
    cells = [
        Cell(
            experiment=config.name,
            seed=seed,
            dataset=config.dataset,
            model=model,
            trained=trained,
            pretrain=config.pretrain,
            combo=combo,
            biomod=biomod_config(combo, config.biomod),
            federation=config.federation,
            defense=defense,
            attack=attack,
            metrics=config.metrics,
        )
        for seed, model, trained in itertools.product(config.seeds, config.models, config.trained)
        for combos, defenses, block_attack in config.blocks()
        for combo, defense in itertools.product(combos, defenses)
        for attack in attack_variants(block_attack, biomod_config(combo, config.biomod))
        if not model.control or combo == "none"
    ]
    keys = [cell.key for cell in cells]
    if len(set(keys)) != len(keys):
        raise ConfigError(
            "the grid contains the same cell twice (check duplicated models, trained states or overlapping grid blocks)"
        )
    return cells
