"""The model registry and the config every model is built from (after timm's ``create_model``).

A model class is registered under a name with ``@register_model("gpt", "decoder-only")`` and
declares its config dataclass as ``config_class`` (a :class:`ModelConfig`). ``build_model({"model":
name, **fields})`` builds ``cls(config_class(**fields))``; a field the config does not have raises
a TypeError naming it and the valid ones.

``model.config`` is that dataclass. It also reads as the JSON mapping a checkpoint stores
(``dict(model.config) == {"model": name, **dataclasses.asdict(model.config)}``), so
``build_model(dict(model.config))`` rebuilds the model. Every registered model has ``.loss(batch)
-> (loss, metrics)``; sequence-to-sequence models add ``.generate(src, src_lengths, *, max_len,
beam_size=1, length_penalty=0.0)``, language models ``.generate(prompt_ids, *, max_new_tokens, ...)``.

A class may define ``config_for_task(task, **fields) -> dict`` (a classmethod): the structural
fields a task fixes (vocabulary sizes, block size, number of classes ...) plus ``fields``. Tuned
sizes live in :mod:`attnkit.presets`, not here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Iterator, Mapping, TypeVar

import torch.nn as nn

from ..core.registry import Registry

__all__ = ["MODELS", "ModelConfig", "register_model", "build_model", "list_models", "model_config_for_task",
           "make_config"]

#: model name -> class
MODELS: Registry[type] = Registry("model")

C = TypeVar("C", bound="ModelConfig")


@dataclasses.dataclass(eq=False)
class ModelConfig(Mapping[str, Any]):
    """Base of the per-model config dataclasses: the fields, readable as ``{"model": name, **fields}``.

    Subclasses set the class variable ``model`` (the registry name) and declare their fields;
    ``__post_init__`` validates them. Equality is the mapping's, so a config equals the JSON
    dict it was saved as.
    """

    model: ClassVar[str] = ""

    def _field_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def __getitem__(self, key: str) -> Any:
        if key == "model":
            return self.model
        if key in self._field_names():
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(["model", *self._field_names()])

    def __len__(self) -> int:
        return 1 + len(self._field_names())

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"model": name, **fields}`` (nested dicts copied)."""
        return {"model": self.model, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls: type[C], fields: Mapping[str, Any]) -> C:
        """``cls(**fields)`` (a "model" key, if any, must name this model); unknown fields raise."""
        fields = dict(fields)
        name = fields.pop("model", cls.model)
        if name != cls.model and name not in MODELS.aliases_of(cls.model):
            raise ValueError(f"a {cls.__name__} is the config of model {cls.model!r}, got model={name!r}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in fields if k not in valid]
        if unknown:
            raise TypeError(f"model {cls.model!r} has no field {', '.join(map(repr, unknown))}; "
                            f"valid fields: {', '.join(valid)}")
        try:
            return cls(**fields)
        except TypeError as e:  # a required field is missing
            raise TypeError(f"model {cls.model!r}: {e}") from None


def make_config(config_class: type[C], config: Any, first_field: str, fields: dict[str, Any]) -> C:
    """A model constructor's argument as its config: a ``config_class`` as is, else the value of
    ``first_field`` (the vocabulary size) with ``fields`` (the ``GPT(65, dim=32)`` shorthand)."""
    if isinstance(config, config_class):
        if fields:
            raise TypeError(f"pass either a {config_class.__name__} or keyword fields, not both "
                            f"(got {', '.join(fields)}); use dataclasses.replace(config, ...)")
        return config
    if isinstance(config, ModelConfig):
        raise TypeError(f"expected a {config_class.__name__}, got a {type(config).__name__}")
    return config_class.from_dict({first_field: config, **fields})


def register_model(name: str, *aliases: str) -> Callable[[type], type]:
    """Class decorator: ``@register_model("gpt", "decoder-only")``; the class's ``config_class.model``
    must be ``name``."""

    def deco(cls: type) -> type:
        cfg = getattr(cls, "config_class", None)
        if cfg is not None and cfg.model != name:
            raise ValueError(f"{cls.__name__}.config_class.model is {cfg.model!r}, registered as {name!r}")
        return MODELS.add(name, cls, *aliases)

    return deco


def list_models() -> list[str]:
    """Every model name, aliases included, sorted."""
    return sorted(MODELS)


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """``build_model({"model": "seq2seq", "src_vocab_size": 30, ...})``; the config is not modified."""
    if not isinstance(config, Mapping) or "model" not in config:
        raise ValueError(f"a model config is a dict with a 'model' key naming one of {', '.join(MODELS.canonical())}")
    cls = MODELS.get(config["model"])
    return cls(cls.config_class.from_dict({k: v for k, v in config.items() if k != "model"}))


def model_config_for_task(name: str, task: Any, **fields: Any) -> dict[str, Any]:
    """The config of model ``name`` sized for ``task`` (its structural fields) plus ``fields``.

    Tuned fields come from the caller: ``model_config_for_task(name, task,
    **attnkit.presets.model_options(task.name, name, **flags))``.
    """
    cls = MODELS.get(name)
    if not hasattr(cls, "config_for_task"):
        raise ValueError(
            f"model {name!r} does not say how to size itself for a task; build it with build_model(config)"
        )
    return cls.config_for_task(task, **fields)
