"""One typed, validated configuration for every stage (DESIGN.md §3–§8).

A ``Config`` holds one dataclass per stage. Every field carries its documentation, and where
relevant its allowed choices or numeric range, in the field metadata; ``validate`` checks them
all and ``describe`` lists them (``supadupstack config`` prints it). A TOML file uses one table
per section (``[stacking]`` ...) plus the top-level ``mode``; CLI overrides use
``section.key=value`` with the value parsed as a TOML literal.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supadupstack.configcheck import allowed, coerce
from supadupstack.errors import ConfigError
from supadupstack.sections import (  # noqa: F401  (re-exported: callers import them here)
    MODES,
    SECTIONS,
    AstrometryConfig,
    CalibrationConfig,
    CanvasConfig,
    ClassicConfig,
    ExecutionConfig,
    IngestConfig,
    OutputConfig,
    PolishConfig,
    QualityConfig,
    ResampleConfig,
    SdsConfig,
    StackingConfig,
)
from supadupstack.smallfile import read_small_text


@dataclass
class Config:
    """The whole configuration; ``Config()`` gives the documented defaults."""

    mode: str = "sds"
    ingest: IngestConfig = field(default_factory=IngestConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    astrometry: AstrometryConfig = field(default_factory=AstrometryConfig)
    canvas: CanvasConfig = field(default_factory=CanvasConfig)
    resample: ResampleConfig = field(default_factory=ResampleConfig)
    stacking: StackingConfig = field(default_factory=StackingConfig)
    sds: SdsConfig = field(default_factory=SdsConfig)
    classic: ClassicConfig = field(default_factory=ClassicConfig)
    polish: PolishConfig = field(default_factory=PolishConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CONFIG_FILE_MAX = 1 << 20  # bytes: a config file is a few kB


def _quoted(text: Any) -> str:
    """A key or section name for an error message: one line, short."""
    shown = repr(str(text))
    return shown if len(shown) <= 62 else shown[:59] + "..."


def _set(cfg: Config, section: str, key: str, value: Any) -> None:
    if section not in SECTIONS:
        raise ConfigError(
            f"unknown config section {_quoted(section)}; allowed: mode, {', '.join(SECTIONS)}"
        )
    obj = getattr(cfg, section)
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if key not in fields:
        raise ConfigError(
            f"unknown config key {_quoted(f'{section}.{key}')}; allowed keys: {', '.join(fields)}"
        )
    setattr(obj, key, coerce(f"{section}.{key}", fields[key], value))


def _set_mode(cfg: Config, value: Any) -> None:
    if not isinstance(value, str) or value not in MODES:
        raise ConfigError(f"config key 'mode': {_quoted(value)} is invalid; allowed: {MODES}")
    cfg.mode = value


def from_mapping(data: dict[str, Any], base: Config | None = None) -> Config:
    """Build a validated Config from a nested mapping (as read from TOML)."""
    cfg = base or Config()
    for section, table in data.items():
        if section == "mode":
            _set_mode(cfg, table)
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"config section {_quoted(section)} must be a table of keys")
        for key, value in table.items():
            _set(cfg, section, key, value)
    validate(cfg)
    return cfg


def load_toml(path: str | Path, base: Config | None = None) -> Config:
    """Read a TOML config file; errors name the file and the key."""
    p = Path(path)
    text = read_small_text(p, CONFIG_FILE_MAX, "config file", ConfigError)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise ConfigError(f"config file {p} is not valid TOML: {first}") from None
    except RecursionError:
        raise ConfigError(f"config file {p} is nested too deeply") from None
    return from_mapping(data, base)


def _literal(raw: str) -> Any:
    """An override's value: a TOML literal, else the plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
    except RecursionError:
        raise ConfigError(f"override value {_quoted(raw)} is nested too deeply") from None


def set_key(cfg: Config, dotted: str, value: Any) -> None:
    """Set one ``section.key`` (or ``mode``) to a Python value, checked like any other."""
    if dotted == "mode":
        _set_mode(cfg, value)
        return
    if "." not in dotted:
        raise ConfigError(f"override {_quoted(dotted)}: key must be section.key")
    section, key = dotted.split(".", 1)
    _set(cfg, section, key, value)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings (value as a TOML literal, else a plain string)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {_quoted(item)} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        set_key(cfg, dotted.strip(), _literal(raw))
    validate(cfg)
    return cfg


def _ordered(cfg: Config, low: str, high: str, strict: bool = True) -> None:
    lo_section, lo_key = low.split(".")
    hi_section, hi_key = high.split(".")
    a, b = getattr(getattr(cfg, lo_section), lo_key), getattr(getattr(cfg, hi_section), hi_key)
    if (a >= b) if strict else (a > b):
        rel = "<" if strict else "<="
        raise ConfigError(f"config key '{low}': must be {rel} {high} ({b})")


def validate(cfg: Config) -> None:
    """Check every field and the cross-field rules; raise ConfigError naming the key."""
    _set_mode(cfg, cfg.mode)
    for section in SECTIONS:
        obj = getattr(cfg, section)
        for f in dataclasses.fields(obj):
            setattr(obj, f.name, coerce(f"{section}.{f.name}", f, getattr(obj, f.name)))
    if cfg.sds.target_batch_size < cfg.sds.min_batch_size:
        raise ConfigError(
            "config key 'sds.target_batch_size': must be >= sds.min_batch_size "
            f"({cfg.sds.min_batch_size})"
        )
    _ordered(cfg, "sds.gain_min", "sds.gain_max")
    _ordered(cfg, "classic.gain_min", "classic.gain_max")
    _ordered(cfg, "polish.two_pass_gain_min", "polish.two_pass_gain_max")
    if cfg.execution.scheduler and cfg.execution.dask_local:
        raise ConfigError(
            "config key 'execution.dask_local': cannot be used with execution.scheduler"
        )


def describe() -> str:
    """A TOML document of every key with its default and documentation."""
    lines = ['mode = "sds"  # "sds" (SupaDupStack) or "classic" (mosaic of master tiles)']
    default = Config()
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        for f in dataclasses.fields(getattr(default, section)):
            value = getattr(getattr(default, section), f.name)
            doc = f"# {f.metadata['doc']} Allowed: {allowed(f)}."
            if value is None:
                lines.append(f"# {f.name} = (unset by default)  {doc}")
            else:
                lines.append(f"{f.name} = {_toml_value(value)}  {doc}")
    return "\n".join(lines) + "\n"


def _toml_literal(value: Any) -> str:
    """A value as a TOML literal (strings escaped as JSON, which TOML basic strings accept)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    return _toml_value(value)


def to_toml(cfg: Config) -> str:
    """The whole ``cfg`` as a TOML document ``load_toml`` reads back to an equal Config: every
    section and key with its value; an unset (None) key is left out where that is its default,
    else written as ``"none"`` (which the checks read as unset)."""
    lines = [f"mode = {_toml_literal(cfg.mode)}"]
    default = Config()
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        for f in dataclasses.fields(getattr(cfg, section)):
            value = getattr(getattr(cfg, section), f.name)
            if value is None:
                if getattr(getattr(default, section), f.name) is not None:
                    lines.append(f'{f.name} = "none"')
                continue
            lines.append(f"{f.name} = {_toml_literal(value)}")
    return "\n".join(lines) + "\n"


def overrides(cfg: Config) -> list[str]:
    """The ``--set section.key=value`` strings that turn the defaults into ``cfg`` (what the
    GUI passes to the ``run`` command it starts); ``mode`` is left to ``--mode``."""
    out: list[str] = []
    default = Config()
    for section in SECTIONS:
        for f in dataclasses.fields(getattr(default, section)):
            value = getattr(getattr(cfg, section), f.name)
            if value != getattr(getattr(default, section), f.name):
                if value is None:
                    shown = "none"
                elif isinstance(value, str):
                    shown = json.dumps(value)  # a TOML basic string, quotes escaped
                else:
                    shown = _toml_value(value)
                out.append(f"{section}.{f.name}={shown}")
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
