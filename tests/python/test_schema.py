"""The package's own declarations against the engine's description of the same
shapes (core/src/schema.rs, handed out as `_native.schema()`): the keyword
arguments (`ProviderOptions`, doctor's signature), the identity-source classes
(`anthropic_wif.sources`) and the doctor report's TypedDicts (`_doctor.py`).
A Rust option, source, field or report key without its Python counterpart, or
the other way round, fails here."""

from __future__ import annotations

import inspect
import json
from typing import Any, Dict

import anthropic_wif
from anthropic_wif import _doctor, _native, sources

SCHEMA: Dict[str, Any] = json.loads(_native.schema())


def test_keyword_arguments_are_the_engine_table() -> None:
    provider = [o["name"] for o in SCHEMA["options"] if o["scope"] == "provider"]
    doctor = [o["name"] for o in SCHEMA["options"] if o["scope"] == "doctor"]
    assert list(anthropic_wif.ProviderOptions.__annotations__) == provider
    assert anthropic_wif.ProviderOptions.__required_keys__ == frozenset()
    for call in (anthropic_wif.doctor, anthropic_wif.adoctor):
        params = list(inspect.signature(call).parameters)
        assert params == doctor + provider, params
        # Its own keyword-only parameters (the signature shown is built from the table).
        code = call.__code__
        assert list(code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]) == doctor


def _text(annotation: Any) -> str:
    """An annotation as written (a string, or a ForwardRef of one)."""
    return str(getattr(annotation, "__forward_arg__", annotation))


def _dummy(annotation: str) -> Any:
    if "Sequence" in annotation:
        return ["x"]
    if "Mapping" in annotation:
        return {"h": "v"}
    if "int" in annotation:
        return 1
    return "x"


def test_every_identity_source_has_a_class_with_its_fields() -> None:
    described = SCHEMA["identity_sources"]
    seen = {}
    for name in sources.__all__:
        cls = getattr(sources, name)
        if cls is sources.IdentitySource:
            continue
        params = inspect.signature(cls).parameters
        full = cls(**{p: _dummy(_text(params[p].annotation)) for p in params}).to_dict()
        tag = full.pop("source")
        assert tag in described, f"sources.{name} builds source {tag!r}, which the engine does not know"
        fields = described[tag]
        assert set(full) == set(fields), f"sources.{name}: {sorted(full)} != {sorted(fields)}"
        required = {p for p in params if params[p].default is inspect.Parameter.empty}
        assert required == {f for f, d in fields.items() if d["required"]}, f"sources.{name}: required {required}"
        seen[tag] = name
    assert set(seen) == set(described), f"no class for {sorted(set(described) - set(seen))}"


def test_the_doctor_report_typed_dicts_are_the_report() -> None:
    for type_name, keys in SCHEMA["doctor_report"].items():
        td = getattr(_doctor, type_name)
        assert set(td.__annotations__) == set(keys), f"{type_name}: {sorted(td.__annotations__)} != {sorted(keys)}"
        required = {k for k, d in keys.items() if d["required"]}
        assert set(td.__required_keys__) == required, f"{type_name}: required {sorted(td.__required_keys__)}"
        for key, d in keys.items():
            annotation = _text(td.__annotations__[key])
            assert annotation.startswith("Optional[") == d["nullable"], f"{type_name}.{key}: {annotation}"
        assert type_name in _doctor.__all__ or type_name == "DoctorField"
