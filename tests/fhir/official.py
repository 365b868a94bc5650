"""Checks of what the gateway serves against HL7's own FHIR R4 (4.0.1) artefacts, vendored in
``tests/fixtures/fhir_r4`` (see its README.md): the official JSON schema, and the official
invariants (FHIRPath, as published in the R4 StructureDefinitions) evaluated with fhirpathpy
on every element of every resource, by the element's type as the definitions give it.

What neither can say (JSON rules the schema leaves open, R4 rules written in prose) is
checked by ``wire_problems`` and ``prose_problems``.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser import parse
from jsonschema import Draft6Validator

FIXTURES = Path(__file__).parent.parent / "fixtures" / "fhir_r4"
R4_MODEL = models["r4"]
SYSTEM_TYPE = "http://hl7.org/fhirpath/System."
# Invariants fhirpathpy cannot evaluate (HL7's own htmlChecks() is the Java validator's), and
# those that hold for no resource without the feature they guard (no narrative is sent).
NOT_EVALUATED = frozenset({"txt-1", "txt-2"})


def _has_value(inputs: list[Any]) -> bool:
    """FHIRPath ``hasValue()`` (FHIR's own function, which fhirpathpy lacks): one primitive
    with a value (in JSON: a string, number or boolean, not an object)."""
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], dict | list)


OPTIONS = {
    "userInvocationTable": {"hasValue": {"fn": _has_value, "arity": {0: []}}},
    "traceFn": lambda *_: None,
}


@cache
def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / "fhir.schema.json").read_text())
    return loaded


@cache
def _validator(resource_type: str) -> Draft6Validator:
    schema = _schema()
    return Draft6Validator(
        {
            "$schema": schema["$schema"],
            "id": schema["id"],
            "$ref": f"#/definitions/{resource_type}",
            "definitions": schema["definitions"],
        }
    )


def schema_problems(resource: dict[str, Any]) -> list[str]:
    """Where ``resource`` breaks the official R4 JSON schema (empty: it does not)."""
    resource_type = resource.get("resourceType")
    if resource_type not in _schema()["discriminator"]["mapping"]:
        return [f"resourceType {resource_type!r} is not one the gateway is meant to serve"]
    out = []
    for error in _validator(resource_type).iter_errors(resource):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        inner = error.instance
        if error.validator == "oneOf" and isinstance(inner, dict) and "resourceType" in inner:
            # An entry's (or outcome's) resource: the oneOf over resource types says only
            # that none matched; its own type's definition says why.
            out += [f"{resource_type}{where}: {p}" for p in schema_problems(inner)]
            continue
        out.append(f"{resource_type}{where}: {error.message[:300]}")
    return out


@cache
def _definitions() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / "invariants.json").read_text())
    return loaded


def _element(path: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = _definitions()["elements"].get(path)
    return found


def _child(parent: str, key: str) -> tuple[str, str | None] | None:
    """The definition path of element ``key`` under ``parent`` and, for a choice element,
    the type its name gives (``valueCoding`` -> Coding)."""
    if _element(f"{parent}.{key}") is not None:
        return f"{parent}.{key}", None
    for n in range(len(key) - 1, 0, -1):
        base, suffix = key[:n], key[n:]
        choice = _element(f"{parent}.{base}[x]")
        if choice is None:
            continue
        for code in choice.get("types", ()):
            if code == suffix or code == suffix[:1].lower() + suffix[1:]:
                return f"{parent}.{base}[x]", code
    return None


class _Walk:
    """Every element occurrence of one resource: (FHIRPath base, definition path, value)."""

    def __init__(self) -> None:
        # (where, FHIRPath base with the element's type, value, constraint keys)
        self.found: list[tuple[str, str, Any, list[str]]] = []
        self.unknown: list[str] = []
        self.resources: list[dict[str, Any]] = []

    def visit(self, value: Any, concrete: str, definition: str, type_code: str | None) -> None:
        element = _element(definition)
        assert element is not None, definition
        keys = list(element.get("constraints", ()))
        types = element.get("types", [])
        code = type_code or (types[0] if len(types) == 1 else None)
        kinds = _definitions()["kinds"]
        if "contentReference" in element:
            children_of = element["contentReference"]
        elif code in ("Resource", "DomainResource") or (code and kinds.get(code) == "resource"):
            if isinstance(value, dict):
                self.resources.append(value)
            return
        elif code in ("BackboneElement", "Element") or definition.count(".") == 0:
            children_of = definition
        elif code and kinds.get(code) == "complex-type":
            root = _element(code)
            assert root is not None, code
            keys += [k for k in root.get("constraints", ()) if k not in keys]
            children_of = code
        else:  # a primitive (or a System type): no children in JSON
            self.found.append((concrete, code or definition, value, keys))
            return
        self.found.append((concrete, children_of, value, keys))
        if not isinstance(value, dict):
            self.unknown.append(f"{concrete}: expected an object")
            return
        for key, item in value.items():
            if key == "resourceType" or key.startswith("_"):
                continue
            child = _child(children_of, key)
            if child is None:
                self.unknown.append(f"{concrete}.{key}: not an element of {children_of}")
                continue
            path, choice_type = child
            for one in item if isinstance(item, list) else [item]:
                self.visit(one, f"{concrete}.{key}", path, choice_type)


# Warnings (best practice) the gateway does not follow, on purpose: see the README of the fixtures.
WARNINGS_ACCEPTED = frozenset({"dom-6"})


@cache
def _parsed(expression: str) -> Any:
    return parse(expression)


def invariant_problems(
    resource: dict[str, Any],
    *,
    severities: tuple[str, ...] = ("error",),
    ignore: frozenset[str] = frozenset(),
) -> list[str]:
    """Which official invariants of ``severities`` the resource (and every resource in it,
    each checked as the resource it is) breaks: ``key at FHIRPath: human``."""
    out: list[str] = []
    todo = [copy.deepcopy(resource)]
    constraints = _definitions()["constraints"]
    while todo:
        current = todo.pop()
        walk = _Walk()
        walk.visit(current, current["resourceType"], current["resourceType"], None)
        out += [f"unknown element {u}" for u in walk.unknown]
        todo += walk.resources
        context = {"resource": current, "rootResource": current}
        for concrete, base, value, keys in walk.found:
            for key in keys:
                rule = constraints[key]
                if rule["severity"] not in severities or key in NOT_EVALUATED or key in ignore:
                    continue
                try:
                    node = ResourceNode.create_node(value, base)
                    result = fhirpathpy.apply_parsed_path(
                        node, _parsed(rule["expression"]), context, R4_MODEL, OPTIONS
                    )
                except Exception as exc:  # noqa: BLE001 - report the expression fhirpathpy could not run
                    out.append(f"{key} at {concrete}: could not be evaluated ({type(exc).__name__}: {exc})")
                    continue
                if result != [True]:
                    out.append(f"{key} at {concrete}: {rule['human']} (got {result!r})")
    return out


# --- what neither the schema nor the invariants say -------------------------------------


_INTEGERS = {"integer": (-(2**31), 2**31 - 1), "unsignedInt": (0, 2**31 - 1), "positiveInt": (1, 2**31 - 1)}


def primitive_problems(resource: dict[str, Any]) -> list[str]:
    """Numbers of R4's integer types in their ranges (datatypes.html: the schema's patterns
    do not apply to JSON numbers, and unsignedInt's official regex is unanchored)."""
    out: list[str] = []
    todo = [resource]
    while todo:
        walk = _Walk()
        current = todo.pop()
        walk.visit(current, current["resourceType"], current["resourceType"], None)
        todo += walk.resources
        for concrete, code, value, _ in walk.found:
            if code in _INTEGERS:
                low, high = _INTEGERS[code]
                if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                    out.append(f"{concrete}: {value!r} is not an R4 {code}")
    return out


def wire_problems(value: Any, path: str = "") -> list[str]:
    """R4 JSON (json.html): no null, no empty object, array or string, no whitespace around
    a string's content where the type forbids it is left to the schema."""
    out: list[str] = []
    if value is None:
        out.append(f"{path}: null")
    elif isinstance(value, str) and not value.strip():
        out.append(f"{path}: empty string")
    elif isinstance(value, list):
        if not value:
            out.append(f"{path}: empty array")
        for i, item in enumerate(value):
            out += wire_problems(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        if not value:
            out.append(f"{path}: empty object")
        for key, item in value.items():
            out += wire_problems(item, f"{path}.{key}")
    return out


_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_DATETIME = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}))?)?)?$")
_MIME = re.compile(r"^[a-z]+/[a-z0-9.+-]+(;.*)?$")
_BCP47 = re.compile(r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{1,8})*$")


def _resources(resource: dict[str, Any]) -> list[dict[str, Any]]:
    out = [resource]
    for entry in resource.get("entry", ()) if resource.get("resourceType") == "Bundle" else ():
        for inner in (entry.get("resource"), (entry.get("response") or {}).get("outcome")):
            if isinstance(inner, dict):
                out += _resources(inner)
    return out


def _real_date(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return len(text) in (4, 7) and text[:4].isdigit()
    return True


def prose_problems(resource: dict[str, Any], base: str | None = None) -> list[str]:
    """R4 rules written in prose rather than as invariants (bundle.html, resource.html,
    datatypes.html), for a resource as served: ``base`` is the server's FHIR base URL."""
    out: list[str] = []
    for res in _resources(resource):
        kind = res["resourceType"]
        meta = res.get("meta", {})
        if "lastUpdated" in meta and not _INSTANT.match(meta["lastUpdated"]):
            out.append(f"{kind}/{res.get('id')} meta.lastUpdated {meta['lastUpdated']!r} is not an instant")
        for text in _values(res, ("valueDateTime", "date", "lastModified", "timestamp")):
            if isinstance(text, str) and not (_DATETIME.match(text) and _real_date(text)):
                out.append(f"{kind}/{res.get('id')}: {text!r} is not an R4 dateTime")
        if kind == "HealthcareService":
            for language in res.get("communication", ()):
                for coding in language.get("coding", ()):
                    if coding.get("system") != "urn:ietf:bcp:47" or not _BCP47.match(coding.get("code", "")):
                        out.append(f"HealthcareService/{res['id']}: communication {coding} is not BCP-47")
        if kind == "CapabilityStatement":
            out += [
                f"format {f!r} is not a mime type or json"
                for f in res["format"]
                if f != "json" and not _MIME.match(f)
            ]
        if kind == "Bundle":
            out += _bundle_problems(res, base)
    return out


def _values(value: Any, names: tuple[str, ...]) -> list[Any]:
    out: list[Any] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in names and not isinstance(item, dict | list):
                out.append(item)
            elif key != "resource":  # entries' resources are checked on their own
                out += _values(item, names)
    elif isinstance(value, list):
        for item in value:
            out += _values(item, names)
    return out


def _bundle_problems(bundle: dict[str, Any], base: str | None) -> list[str]:
    """bundle.html and http.html: fullUrl is the absolute URL of the resource on this server
    (no _history), search entries have a mode, responses carry status, history entries'
    etag/lastModified agree with the resource they carry, links have distinct relations."""
    out: list[str] = []
    kind = bundle["type"]
    relations = [link["relation"] for link in bundle.get("link", ())]
    if len(relations) != len(set(relations)):
        out.append(f"Bundle/{bundle.get('id')}: a link relation appears twice: {relations}")
    for i, entry in enumerate(bundle.get("entry", ())):
        where = f"Bundle({kind}).entry[{i}]"
        resource = entry.get("resource")
        if isinstance(resource, dict) and "fullUrl" in entry and "id" in resource and base:
            expected = f"{base}/{resource['resourceType']}/{resource['id']}"
            if entry["fullUrl"] != expected:
                out.append(f"{where}.fullUrl {entry['fullUrl']!r} is not {expected!r}")
        if (
            isinstance(resource, dict)
            and "id" in resource
            and "fullUrl" not in entry
            and kind
            in (
                "searchset",
                "history",
            )
        ):
            out.append(f"{where}: a resource with an id and no fullUrl")
        if kind == "searchset" and "mode" not in entry.get("search", {}):
            out.append(f"{where}: a searchset entry without search.mode")
        response = entry.get("response")
        if kind == "history" and isinstance(resource, dict) and response:
            meta = resource.get("meta", {})
            if response.get("etag") != f'W/"{meta.get("versionId")}"':
                out.append(f"{where}.response.etag {response.get('etag')!r} is not meta.versionId's")
            if response.get("lastModified") != meta.get("lastUpdated"):
                out.append(f"{where}.response.lastModified is not meta.lastUpdated")
        if response is not None and not re.match(r"^[1-5]\d\d( .*)?$", response.get("status", "")):
            out.append(f"{where}.response.status {response.get('status')!r} does not start with an HTTP code")
    return out


def all_problems(resource: dict[str, Any], base: str | None = None) -> list[str]:
    """Everything the checks above find in one served resource."""
    return (
        schema_problems(resource)
        + invariant_problems(resource, severities=("error", "warning"), ignore=WARNINGS_ACCEPTED)
        + wire_problems(resource, resource.get("resourceType", ""))
        + prose_problems(resource, base)
        + terminology_problems(resource)
        + expression_problems(resource)
        + primitive_problems(resource)
    )


# --- terminology and search parameters, against HL7's own ---------------------------------


@cache
def _terminology() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / "terminology.json").read_text())
    return loaded


HL7_SYSTEMS = ("http://terminology.hl7.org/CodeSystem/", "http://hl7.org/fhir/")


def _codings(value: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(value, dict):
        if isinstance(value.get("system"), str) and isinstance(value.get("code"), str):
            out.append((path, value))
        for key, item in value.items():
            out += _codings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _codings(item, f"{path}[{i}]")
    return out


def terminology_problems(resource: dict[str, Any]) -> list[str]:
    """Codings in HL7's code systems: the code is one of HL7's and the display is HL7's own
    (terminologies.html: a display, when given, is the code system's display for the code)."""
    systems = _terminology()["codeSystems"]
    out: list[str] = []
    for path, coding in _codings(resource, resource.get("resourceType", "")):
        system = coding["system"]
        if system not in systems:
            if system.startswith(HL7_SYSTEMS):
                out.append(f"{path}: {system} is HL7's, but not among the vendored code systems to check")
            continue
        concepts = systems[system]["concepts"]
        if coding["code"] not in concepts:
            out.append(f"{path}: {coding['code']!r} is not a code of {system}")
        elif "display" in coding and coding["display"] != concepts[coding["code"]]:
            out.append(
                f"{path}: display {coding['display']!r} for {coding['code']} is not HL7's "
                f"{concepts[coding['code']]!r}"
            )
    return out


def capability_problems(statement: dict[str, Any], published: set[str]) -> list[str]:
    """Each declared search parameter against HL7's definition of it: the code a type's own
    parameter has is that parameter, of its type, and ``definition`` names an HL7 or a
    published (``published``: the gateway's own) SearchParameter of that code; each
    ``searchInclude``/``searchRevInclude`` names a reference parameter."""
    official = _terminology()["searchParameters"]
    out: list[str] = []
    resources = {r["type"]: r for rest in statement["rest"] for r in rest.get("resource", ())}
    for resource_type, resource in resources.items():
        by_code = {
            p["code"]: (url, p)
            for url, p in official.items()
            if resource_type in p["base"] or {"Resource", "DomainResource"} & set(p["base"])
        }
        declared = {p["name"]: p for p in resource.get("searchParam", ())}
        for name, param in declared.items():
            definition = param.get("definition")
            if definition is not None and definition not in official and definition not in published:
                out.append(f"{resource_type}.{name}: definition {definition} is neither HL7's nor published")
            if definition in official and official[definition]["code"] != name:
                other = official[definition]["code"]
                out.append(f"{resource_type}.{name}: definition {definition} is the parameter {other}")
            if name in by_code and definition not in published:
                url, hl7 = by_code[name]
                if param["type"] != hl7["type"]:
                    out.append(f"{resource_type}.{name}: type {param['type']}, HL7's {url} is {hl7['type']}")
                if definition is not None and definition != url:
                    out.append(f"{resource_type}.{name}: definition {definition}, HL7's is {url}")
        for element, own_type in (("searchInclude", True), ("searchRevInclude", False)):
            for include in resource.get(element, ()):
                parts = include.split(":")
                source = parts[0]
                target = resources.get(source, {})
                param = {p["name"]: p for p in target.get("searchParam", ())}.get(
                    parts[1] if len(parts) > 1 else ""
                )
                if (source == resource_type) != own_type or param is None or param["type"] != "reference":
                    out.append(
                        f"{resource_type}.{element} {include!r} names no reference parameter of {source}"
                    )
    return out


_STEP = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\[[0-9]+\])?$")


def _element_path_problem(expression: str) -> str | None:
    """Why ``expression`` is not an element path of R4 (the "simple subset of FHIRPath"
    OperationOutcome.issue.expression is), or None: from a resource type, element by element
    (as far as a contained resource of unknown type), with repetition indices."""
    steps = expression.split(".")
    kinds = _definitions()["kinds"]
    if kinds.get(steps[0]) != "resource":
        return f"does not start with a resource type ({steps[0]!r})"
    where = steps[0]
    for step in steps[1:]:
        found = _STEP.match(step)
        if found is None:
            return f"{step!r} is not an element name"
        child = _child(where, found.group(1))
        if child is None:
            return f"{found.group(1)!r} is not an element of {where}"
        path, choice = child
        element = _element(path) or {}
        code = choice or (element.get("types") or [None])[0]
        if "contentReference" in element:
            where = element["contentReference"]
        elif code in ("Resource", "DomainResource"):
            return None  # an entry's or outcome's resource: its type is the instance's
        elif code in ("BackboneElement", "Element"):
            where = path
        elif code and kinds.get(code) == "complex-type":
            where = code
        else:
            where = path
    return None


def expression_problems(resource: dict[str, Any]) -> list[str]:
    """OperationOutcome.issue.expression: each an element path (R4: "a simple subset of
    FHIRPath limited to element names, repetition indicators and the default child
    accessor that identifies one of the elements in the resource that caused this issue")."""
    out: list[str] = []
    for res in _resources(resource):
        if res.get("resourceType") != "OperationOutcome":
            continue
        for issue in res.get("issue", ()):
            for expression in issue.get("expression", ()):
                problem = _element_path_problem(expression)
                if problem:
                    out.append(f"OperationOutcome.issue.expression {expression!r}: {problem}")
    return out


_FIXED = re.compile(r"^(fixed|pattern)([A-Z][A-Za-z]*)$")


def _resolve(type_name: str, path: str) -> dict[str, Any] | None:
    """The base element of a profile's element path (``Extension.extension.value[x]`` ->
    ``Extension.value[x]``): each step in the type the previous step has."""
    steps = path.split(".")
    if steps[0] != type_name:
        return None
    where, element = type_name, _element(type_name)
    for step in steps[1:]:
        element = _element(f"{where}.{step}")
        if element is None:
            return None
        types = element.get("types", [])
        if "contentReference" in element:
            where = element["contentReference"]
        elif len(types) == 1 and _definitions()["kinds"].get(types[0]) == "complex-type":
            where = types[0]
        else:
            where = f"{where}.{step}"
    return element


def structure_definition_problems(sd: dict[str, Any], value_sets: set[str]) -> list[str]:
    """A profile's (an extension's) differential against the R4 definitions of its type: each
    path is an element of the base, each type an R4 type the base allows, fixed/pattern
    values of that type, bindings to a ValueSet someone publishes (``value_sets``: the
    gateway's own), and contexts R4 elements."""
    kinds = _definitions()["kinds"]
    out: list[str] = []
    where = f"StructureDefinition/{sd['id']}"
    for context in sd.get("context", ()):
        if context["type"] == "element" and _element(context["expression"]) is None:
            out.append(f"{where}: context {context['expression']!r} is not an R4 element")
    for element in sd.get("differential", {}).get("element", ()):
        base = _resolve(sd["type"], element["path"])
        if base is None:
            out.append(f"{where}: {element['path']} is not an element of {sd['type']}")
            continue
        allowed = {SYSTEM_TYPE + "String": "uri"}.get(
            (base.get("types") or [""])[0]
        )  # Extension.url is a uri with a FHIRPath String type
        base_types = set(base.get("types", ())) | ({allowed} if allowed else set())
        types = [t["code"] for t in element.get("type", ())]
        for code in types:
            if kinds.get(code) not in ("complex-type", "primitive-type"):
                out.append(f"{where}: {element['id']} type {code!r} is not an R4 data type")
            elif base_types and code not in base_types:
                out.append(f"{where}: {element['id']} type {code!r} is not allowed by the base")
        for key in element:
            found = _FIXED.match(key)
            if found is None:
                continue
            code = found.group(2)
            code = code if kinds.get(code) else code[:1].lower() + code[1:]
            if code not in (types or base_types):
                out.append(
                    f"{where}: {element['id']} {key} is not of the element's type {types or base_types}"
                )
            out += [f"{where}: {element['id']}.{key}: {p}" for p in _datatype_problems(code, element[key])]
        binding = element.get("binding")
        if (
            binding
            and binding.get("valueSet") not in value_sets
            and not str(binding.get("valueSet")).startswith("http://hl7.org/fhir/ValueSet/")
        ):
            out.append(f"{where}: {element['id']} binds to {binding.get('valueSet')}, which nobody publishes")
    return out


def _datatype_problems(code: str, value: Any) -> list[str]:
    """A value of data type ``code`` against the official schema."""
    definitions = _schema()["definitions"]
    if code not in definitions:
        return [f"no schema for {code}"]
    validator = Draft6Validator(
        {"id": _schema()["id"], "$ref": f"#/definitions/{code}", "definitions": definitions}
    )
    return [e.message for e in validator.iter_errors(value)]


def shape(value: Any, path: str = "") -> frozenset[str]:
    """The structure of a JSON value (element paths, extension URLs and coding systems,
    without values or repetition): resources of one shape exercise the same rules."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}"
            if key in ("url", "system", "resourceType") and isinstance(item, str):
                here = f"{here}={item}"
            out.add(here)
            out |= shape(item, here)
    elif isinstance(value, list):
        for item in value:
            out |= shape(item, path)
    return frozenset(out)


def one_of_each_shape(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first resource of each shape, in order."""
    seen: dict[frozenset[str], dict[str, Any]] = {}
    for resource in resources:
        seen.setdefault(shape(resource), resource)
    return list(seen.values())
