"""``DefenseSet``: the ordered defenses of one cell."""

from __future__ import annotations

from typing import TypeVar

from pydantic import model_validator

from fedsyn.strict import StrictModel

from .registry import DEFENSES, DefenseConfig

Step = TypeVar("Step", bound=StrictModel)


class DefenseSet(StrictModel):
    """The defenses one cell applies, in order, to every client update. Empty means no defense.

    Each type appears at most once. Training defenses (``dpsgd``) act during local training, so they
    come first; transport defenses (``secagg``) carry the finished update, so they come last. The update
    defenses in between transform the update in the order given (``fedsyn.defenses.registry``).
    """

    name: str = "none"
    steps: tuple[DefenseConfig, ...] = ()  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _well_ordered(self) -> "DefenseSet":
        types = [step.type for step in self.steps]
        repeated = sorted({t for t in types if types.count(t) > 1})
        if repeated:
            raise ValueError(f"defense set {self.name!r}: each defense type may appear once, repeated: {repeated}")
        stages = [DEFENSES[t].stage for t in types]
        for index, (kind, stage) in enumerate(zip(types, stages)):
            if stage == "training" and any(s != "training" for s in stages[:index]):
                raise ValueError(f"defense set {self.name!r}: {kind!r} acts during training and must be the first step")
            if stage == "transport" and any(s != "transport" for s in stages[index + 1 :]):
                raise ValueError(
                    f"defense set {self.name!r}: {kind!r} sends the finished update and must be the last step"
                )
        return self

    def find(self, kind: type[Step]) -> Step | None:
        """The step of the given class (e.g. ``DPSGD``), or None when the set has none."""
        return next((step for step in self.steps if isinstance(step, kind)), None)
