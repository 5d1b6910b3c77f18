"""The one plugin mechanism, for methods and tasks: a registry that scans a config group, and
plugins whose options are a dataclass.

A plugin is a :class:`Plugin` subclass named by a config file ``conf/<group>/<slug>.yaml``
(``name: <slug>``, ``impl: package.module:Class`` and option values). :class:`Registry` scans the
group's YAML files on first use and imports a class only when asked for it; a file with a
``defaults`` list is a variant of another file (``hvp_shared``, ``ig_fast``) and names no class
of its own. An unknown slug is answered with the accepted ones and, for a typo, a "did you mean".

A plugin declares its options once, as a frozen dataclass ``Options``: each field's name, type
and default; a numeric range with :func:`harness.config.bounded` (checked by
:func:`harness.config.check_ranges`, the config schema's own validator); a fixed set of values
with :func:`harness.config.one_of`; a ``bool`` field takes only true or false. Rules that tie
options together go in :meth:`Plugin.validate`. Every violation is one line. Nothing is written
to a class at run time: the slug a plugin runs under is its instance's ``name``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from harness.errors import HarnessError

T = TypeVar("T", bound="Plugin")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The options of a plugin that takes none."""


class Plugin:
    """Base of methods and tasks: built from a config mapping by :meth:`Registry.build`.

    ``Options``: the frozen dataclass of the plugin's options (:func:`parse_options` checks a
    config against it); ``self.options`` holds the checked instance and ``self.name`` the slug
    the plugin runs under (its config's ``name``)."""

    axis: ClassVar[str] = "plugin"
    """What the plugin is (``method``, ``task``): the prefix of its options' keys in messages."""
    Options: ClassVar[type] = NoOptions

    def __init__(self, name: str = "", **options: Any) -> None:
        self.name = name or type(self).__name__
        self.options = parse_options(type(self).Options, options, self.axis, self.name)
        self.validate()

    def validate(self) -> None:  # noqa: B027 - optional override
        """Rules between options; raise :class:`HarnessError` with a one-line message."""

    @property
    def config(self) -> dict[str, Any]:
        """The options as a plain dict (what records show)."""
        return dataclasses.asdict(self.options)

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({self.name!r}{opts})"


def parse_options(schema: type, values: Mapping[str, Any], axis: str, name: str) -> Any:
    """The ``schema`` dataclass built from ``values``, after one-line errors for an unknown
    option, a non-boolean ``bool`` option, a value outside a :func:`~harness.config.one_of`
    field's choices or outside a :func:`~harness.config.bounded` field's range."""
    from harness.config import check_ranges

    fields = {f.name: f for f in dataclasses.fields(schema)}
    accepted = sorted(fields)
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise HarnessError(
                f"unknown option {key!r} for {axis} {name!r}; "
                f"accepted: {', '.join(accepted) or 'none'}{hint}"
            )
    for key, f in fields.items():
        if key not in values and dataclasses.MISSING is f.default is f.default_factory:
            raise HarnessError(f"{axis} {name!r} needs option {key!r}")
    hints = typing.get_type_hints(schema)
    for key, value in values.items():
        if hints[key] is bool and not isinstance(value, bool):
            raise HarnessError(
                f"option {key} of {axis} {name!r} must be true or false, got {value!r}; "
                "accepted: true, false"
            )
        choices = fields[key].metadata.get("choices")  # named by the plugin, e.g. 'sff fix'
        if choices is not None:
            choices.check(f"{name} {key}", value)
    check_ranges(values, schema, f"{axis}.")
    return schema(**values)


class Registry(Generic[T]):
    """Slug -> plugin class, for the config group ``group`` (``conf/<group>/``), scanned on first
    use; each class is imported when first asked for and must subclass ``base``."""

    def __init__(self, axis: str, group: str, base: type[T]) -> None:
        self.axis = axis
        self.group = group
        self.base = base
        self._entries: dict[str, type[T] | str] | None = None

    def _scan(self) -> dict[str, type[T] | str]:
        if self._entries is None:
            from harness.config_files import group_configs

            entries: dict[str, type[T] | str] = {}
            for slug, data in group_configs(self.group).items():
                if "defaults" in data:
                    continue  # a variant composing another file of the group
                where = f"conf/{self.group}/{slug}.yaml"
                if not isinstance(data.get("impl"), str):
                    raise HarnessError(f"{where}: needs 'impl: package.module:Class'")
                if data.get("name", slug) != slug:
                    raise HarnessError(f"{where}: name {data.get('name')!r} must be {slug!r}")
                entries[slug] = data["impl"]
            self._entries = entries
        return self._entries

    def names(self) -> list[str]:
        return sorted(self._scan())

    def __contains__(self, slug: str) -> bool:
        return slug in self._scan()

    def get(self, slug: str) -> type[T]:
        """The class registered under ``slug``; a one-line error names the accepted slugs."""
        entries = self._scan()
        if slug not in entries:
            raise HarnessError(unknown_choice(self.axis, slug, self.names()))
        target = entries[slug]
        if isinstance(target, str):
            target = entries[slug] = self._load(target, slug)
        return target

    def config(self, slug: str) -> dict[str, Any]:
        """The shipped ``conf/<group>/<slug>.yaml`` as a dict (name, impl and option values)."""
        from harness.config_files import group_configs

        configs = group_configs(self.group)
        if slug not in configs:
            raise HarnessError(unknown_choice(self.axis, slug, sorted(configs)))
        return configs[slug]

    def build(self, cfg: Mapping[str, Any]) -> T:
        """The plugin of a config mapping: ``name``, ``impl`` (``package.module:Class``, which
        wins over the registry, so a user's own class works by import path) and its options."""
        cfg = plain_dict(cfg, self.axis)
        name = cfg.pop("name", None)
        impl = cfg.pop("impl", None)
        if impl is not None:
            if not isinstance(impl, str):
                raise HarnessError(f"{self.axis} {name!r}: impl must be a 'package.module:Class'")
            cls = self._load(impl, name)
        elif name is not None:
            cls = self.get(str(name))
        else:
            raise HarnessError(f"{self.axis} config needs 'name' or 'impl'")
        return cls(name=str(name or ""), **cfg)

    def _load(self, impl: str, name: object) -> type[T]:
        cls = import_object(impl)
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise HarnessError(
                f"{self.axis} {name!r}: impl {impl!r} is not a {self.base.__name__} subclass"
            )
        return cls


def plain_dict(cfg: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A config mapping (a dict or an OmegaConf node, resolved) as a plain dict."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(cfg, DictConfig):
        return dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    if not isinstance(cfg, Mapping):
        raise HarnessError(f"{what} config must be a mapping, got {type(cfg).__name__}")
    return dict(cfg)


def unknown_choice(axis: str, value: object, accepted: list[str]) -> str:
    """One line: the bad value, a close match if any, and every accepted value."""
    close = difflib.get_close_matches(str(value), accepted, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {axis} {value!r}{hint}; accepted: {', '.join(accepted)}"


def import_object(path: str) -> object:
    """Import ``"package.module:attr"`` (or ``"package.module.attr"``)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise HarnessError(f"import path {path!r} is not of the form 'package.module:attr'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise HarnessError(f"cannot import module {module_name!r} for {path!r}: {err}") from err
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise HarnessError(f"module {module_name!r} has no attribute {attr!r}") from err
