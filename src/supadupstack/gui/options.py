"""Widgets generated from the config schema (``sections``/``configcheck.option`` metadata):
the kind, range, choices and documentation of a key come from its dataclass field, never
from a second list in the GUI."""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox, QWidget

from supadupstack.config import Config
from supadupstack.configcheck import NUMBER_MAX, allowed, kind


def schema_field(cfg: Config, dotted: str) -> dataclasses.Field:
    """The dataclass field of ``section.key``."""
    section, key = dotted.split(".", 1)
    for f in dataclasses.fields(getattr(cfg, section)):
        if f.name == key:
            return f
    raise KeyError(dotted)


def current(cfg: Config, dotted: str):
    section, key = dotted.split(".", 1)
    return getattr(getattr(cfg, section), key)


def editor(cfg: Config, dotted: str, parent: QWidget | None = None) -> QWidget:
    """A spin box, combo box, check box or text field for one key, set to its value in ``cfg``, with
    the key's documentation and allowed values as tooltip. ``value_of`` reads it back."""
    f = schema_field(cfg, dotted)
    meta, value, k = f.metadata, current(cfg, dotted), kind(f)
    lo = meta.get("lo")
    hi = NUMBER_MAX if meta.get("hi") is None else meta["hi"]
    widget: QWidget
    if meta.get("choices"):
        widget = QComboBox(parent)
        widget.addItems([str(c) for c in meta["choices"]])
        widget.setCurrentText(str(value))
    elif k == "bool":
        widget = QCheckBox(parent)
        widget.setChecked(bool(value))
    elif k == "int":
        widget = QSpinBox(parent)
        widget.setRange(int(lo if lo is not None else -NUMBER_MAX), int(hi))
        widget.setValue(int(value))
    elif k == "float":
        widget = QDoubleSpinBox(parent)
        widget.setDecimals(3 if hi <= 10 else 1)
        widget.setSingleStep(0.01 if hi <= 10 else 1.0)
        widget.setRange(float(lo if lo is not None else -NUMBER_MAX), float(hi))
        widget.setValue(float(value))
    elif k == "str":
        widget = QLineEdit(parent)
        widget.setText(str(value))
    else:
        raise TypeError(f"no editor for {dotted} ({k})")
    widget.setObjectName(dotted)
    widget.setToolTip(f"{dotted}: {meta.get('doc', '')}\nallowed: {allowed(f)}")
    return widget


def value_of(widget: QWidget):
    """The value an ``editor`` widget holds."""
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QLineEdit):
        return widget.text()
    return widget.value()


def changed_signal(widget: QWidget):
    """The signal an ``editor`` widget emits when its value changes."""
    if isinstance(widget, QComboBox):
        return widget.currentTextChanged
    if isinstance(widget, QCheckBox):
        return widget.toggled
    if isinstance(widget, QLineEdit):
        return widget.editingFinished
    return widget.valueChanged


def set_value(widget: QWidget, value) -> None:
    """Show ``value`` in an ``editor`` widget."""
    if isinstance(widget, QComboBox):
        widget.setCurrentText(str(value))
    elif isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, QLineEdit):
        widget.setText(str(value))
    else:
        widget.setValue(value)
