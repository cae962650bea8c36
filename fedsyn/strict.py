"""Base class for every configuration model: unknown keys are errors, instances are immutable, and a
boolean is never accepted as a number (pydantic's lax mode would read ``clients: true`` as 1 client).

``keyword_options_model`` turns a builder's keyword-only parameters (a model's or a dataset's options)
into such a model, so a config's options are checked against the builder itself when it loads.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, ValidationError, create_model, model_validator


def _leaf_types(annotation: Any) -> set[Any]:
    """The plain types a field annotation is made of (``tuple[int, ...] | None`` -> {int, NoneType});
    ``Any`` and unknown forms count as ``object``."""
    if annotation is Any:
        return {object}
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _leaf_types(typing.get_args(annotation)[0])
    if origin is Literal:
        return {type(value) for value in typing.get_args(annotation)}
    if origin in (Union, types.UnionType) or origin in (tuple, list, set, frozenset):
        return set().union(*(_leaf_types(arg) for arg in typing.get_args(annotation) if arg is not Ellipsis))
    if origin is not None:  # dict[...] and other containers: not checked here
        return {object}
    return {annotation}


def _bools_in(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, (list, tuple)) and any(isinstance(item, bool) for item in value)


def _boolean_numbers(annotation: Any, value: Any, where: str) -> list[str]:
    """Where ``value`` puts a boolean in a field of type ``annotation`` that wants a number; looks into
    the fields of a nested pydantic model that is not a ``StrictModel`` (e.g. ``attacks.AttackConfig``),
    since a ``StrictModel`` checks its own."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        if issubclass(annotation, StrictModel):
            return []
        fields = annotation.model_fields
        return [
            found
            for key, item in value.items()
            if key in fields
            for found in _boolean_numbers(fields[key].annotation, item, f"{where}.{key}")
        ]
    if not _bools_in(value):
        return []
    leaves = _leaf_types(annotation)
    return [where] if bool not in leaves and object not in leaves and leaves & {int, float} else []


class KnownFieldsModel(BaseModel):
    """A model that refuses unknown keys with the list of the fields it has (pydantic's own message for
    ``extra="forbid"`` names the key but not the allowed ones)."""

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError(f"unknown field(s) {unknown}; allowed fields: {', '.join(cls.model_fields)}")
        return data


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        """Refuse ``true``/``false`` where a field wants a number (and does not also take a boolean)."""
        if isinstance(data, dict):
            fields = cls.model_fields
            found = [
                where
                for key, value in data.items()
                if key in fields
                for where in _boolean_numbers(fields[key].annotation, value, str(key))
            ]
            if found:
                raise ValueError(f"a boolean is not a number ({', '.join(found)}); write the number")
        return data


def keyword_options_model(
    function: Callable[..., Any], name: str, check: Callable[..., object] | None = None
) -> type[StrictModel]:
    """A ``StrictModel`` with one field per keyword-only parameter of ``function``: its annotation (with
    any constraint, e.g. ``PositiveInt``) and its default. ``function`` may be a ``functools.partial``.
    ``check``, called with every option (defaults filled in), raises ``ValueError`` for combinations of
    values the types cannot express."""
    target = function.func if isinstance(function, functools.partial) else function
    hints = typing.get_type_hints(target, include_extras=True)
    fields: dict[str, Any] = {
        parameter.name: (
            hints.get(parameter.name, Any),
            ... if parameter.default is inspect.Parameter.empty else parameter.default,
        )
        for parameter in inspect.signature(function).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    if check is None:
        return create_model(name, __base__=StrictModel, **fields)

    def checked(model: BaseModel) -> BaseModel:
        check(**dict(model))
        return model

    return create_model(
        name, __base__=StrictModel, __validators__={"_check": model_validator(mode="after")(checked)}, **fields
    )


def _reason(error: Any) -> str:
    where = ".".join(map(str, error["loc"]))
    if error["type"] == "extra_forbidden":
        return f"no option {where!r}"
    return f"option {where}: {error['msg']}" if where else error["msg"]


def validate_options(schema: type[StrictModel], options: dict[str, Any], what: str) -> dict[str, Any]:
    """``options`` checked against ``schema`` (from ``keyword_options_model``), as given (defaults not added);
    ``ValueError`` naming ``what``, each bad option and the options there are."""
    try:
        checked = schema.model_validate(options)
    except ValidationError as err:
        reasons = "; ".join(_reason(error) for error in err.errors())
        known = ", ".join(schema.model_fields) or "none"
        raise ValueError(f"{what}: {reasons} (its options: {known})") from None
    return checked.model_dump(mode="json", exclude_unset=True)
