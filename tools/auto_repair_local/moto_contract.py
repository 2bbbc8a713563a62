"""The fence around moto: which moto releases and which moto internals each patch module was written for.

The local cloud changes moto's behaviour by replacing or wrapping moto's own classes and functions, which are not a
public API: a moto release may rename, move or re-sign any of them. So every module of ``auto_repair_local`` that
touches moto declares, in one place, right under its imports:

* ``MOTO_VERSIONS = ">=5.2.5,<5.3"``: the moto releases it was written and tested against;
* ``MOTO_TOUCHPOINTS = (...)``: every moto internal it relies on, as a dotted name, in one of three shapes:

  - ``"moto.cloudformation.parsing.ResourceMap"``: the name exists;
  - ``"moto.awslambda.models.LambdaAlias.update(description, function_version, routing_config)"``: it is callable
    and takes (at least) those parameters, the ones the patch passes or receives;
  - ``"moto.awslambda.models.LambdaFunction#function_name"``: instances carry that attribute (a class attribute,
    property, dataclass field or an assignment ``self.function_name = ...`` in the class's source).

``problems(module)`` checks a module's declaration against the installed moto; the server refuses to start on any
problem (``enforce``) unless ``AUTO_REPAIR_LOCAL_ALLOW_MOTO=1``, and ``tests/unit/test_local_cloud_contracts.py``
runs the same check for every patch module, so a moto upgrade yields a list of failures each naming the patch
module and the internal it lost. The upgrade procedure is in docs/ARCHITECTURE.md ("Upgrading moto").
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from types import ModuleType
from typing import Any

ALLOW_ENV = "AUTO_REPAIR_LOCAL_ALLOW_MOTO"
PACKAGE = "auto_repair_local"

_TOUCHPOINT = re.compile(r"^(?P<path>moto(?:\.\w+)+)(?:#(?P<attr>\w+)|\((?P<params>[\w\s,*]*)\))?$")
_VERSION_CLAUSE = re.compile(r"^(>=|<=|==|!=|>|<)\s*(\d+(?:\.\d+)*)$")


class MotoContractError(RuntimeError):
    """moto is not what a patch module was written for; the message names every module and internal concerned."""


@dataclass(frozen=True)
class Touchpoint:
    path: str  # dotted name of the moto object
    params: tuple[str, ...] | None = None  # parameters it must take (None: need not be callable)
    instance_attr: str | None = None  # attribute its instances must carry

    @classmethod
    def parse(cls, text: str) -> Touchpoint:
        match = _TOUCHPOINT.match(text.strip())
        if match is None:
            raise ValueError(f"not a moto touchpoint: {text!r} (see auto_repair_local.moto_contract)")
        params = match["params"]
        return cls(
            path=match["path"],
            params=None if params is None else tuple(p.strip() for p in params.split(",") if p.strip()),
            instance_attr=match["attr"],
        )


def resolve(path: str) -> Any:
    """The object a dotted name points to: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for i, name in enumerate(parts[split:], start=split):
            if not hasattr(target, name):
                raise LookupError(f"{'.'.join(parts[:i])} has no attribute {name!r}")
            target = getattr(target, name)
        return target
    raise LookupError(f"module {parts[0]!r} cannot be imported")


@functools.cache
def _assigned_by_class(filename: str) -> dict[str, frozenset[str]]:
    """Per class (by qualified name) in one source file: the names assigned as ``self.<name> = ...`` in its body.
    One parse per file (inspect.getsource per class re-parses the module each time: seconds at server start)."""
    tree = ast.parse(Path(filename).read_text(encoding="utf-8"))
    found: dict[str, frozenset[str]] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}{child.name}"
                found[name] = frozenset(
                    target.attr
                    for sub in ast.walk(child)
                    if isinstance(sub, (ast.Assign, ast.AnnAssign, ast.AugAssign))
                    for target in (sub.targets if isinstance(sub, ast.Assign) else [sub.target])
                    if isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                )
                visit(child, f"{name}.")

    visit(tree, "")
    return found


def _assigned_attributes(cls: type) -> frozenset[str]:
    try:
        filename = inspect.getsourcefile(cls)
    except TypeError:
        return frozenset()
    if filename is None:
        return frozenset()
    return _assigned_by_class(filename).get(cls.__qualname__, frozenset())


def _has_instance_attr(cls: type, attr: str) -> bool:
    if hasattr(cls, attr) or attr in getattr(cls, "__dataclass_fields__", {}):
        return True
    return any(attr in _assigned_attributes(klass) for klass in cls.__mro__ if klass is not object)


def _missing_params(target: Any, wanted: tuple[str, ...]) -> list[str]:
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return []  # builtins without a signature: callability is all that can be checked
    return [p for p in wanted if p.lstrip("*") not in params]


def touchpoint_problem(text: str, instance_attributes: bool = True) -> str | None:
    """Why a touchpoint no longer holds in the installed moto, or None. ``instance_attributes=False`` skips the
    ``Class#attr`` source scan (a second of parsing moto's sources; the contract test always does it)."""
    point = Touchpoint.parse(text)
    try:
        target = resolve(point.path)
    except LookupError as exc:
        return f"{point.path} is missing ({exc})"
    if point.instance_attr is not None and instance_attributes:
        if not isinstance(target, type):
            return f"{point.path} is no longer a class (needed for #{point.instance_attr})"
        if not _has_instance_attr(target, point.instance_attr):
            return f"{point.path} instances no longer carry {point.instance_attr!r}"
    if point.params is not None:
        if not callable(target):
            return f"{point.path} is no longer callable"
        missing = _missing_params(target, point.params)
        if missing:
            return f"{point.path} no longer takes parameter(s) {', '.join(missing)}"
    return None


def _version_tuple(text: str) -> tuple[int, ...]:
    numbers = re.match(r"\d+(?:\.\d+)*", text)
    if numbers is None:
        raise ValueError(f"not a version: {text!r}")
    parts = [int(p) for p in numbers.group(0).split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def version_in_range(version: str, spec: str) -> bool:
    """``spec`` is comma-separated clauses (``>=5.2.5,<5.3``); every clause must hold."""
    have = _version_tuple(version)
    for clause in spec.split(","):
        match = _VERSION_CLAUSE.match(clause.strip())
        if match is None:
            raise ValueError(f"not a version range clause: {clause!r} in {spec!r}")
        op, want = match[1], _version_tuple(match[2])
        holds = {
            ">=": have >= want,
            "<=": have <= want,
            "==": have == want,
            "!=": have != want,
            ">": have > want,
            "<": have < want,
        }[op]
        if not holds:
            return False
    return True


def moto_version() -> str:
    return installed_version("moto")


def problems(module: ModuleType, moto: str | None = None, instance_attributes: bool = True) -> list[str]:
    """Every way the installed moto differs from what ``module`` declares, each naming the module."""
    name = module.__name__
    spec = getattr(module, "MOTO_VERSIONS", None)
    points = getattr(module, "MOTO_TOUCHPOINTS", None)
    if spec is None or points is None:
        return [f"{name}: declares no MOTO_VERSIONS / MOTO_TOUCHPOINTS"]
    found = []
    moto = moto or moto_version()
    if not version_in_range(moto, spec):
        found.append(f"{name}: written for moto {spec}, installed moto is {moto}")
    for text in points:
        problem = touchpoint_problem(text, instance_attributes)
        if problem:
            found.append(f"{name}: {problem}")
    return found


def touches_moto(module: ModuleType) -> bool:
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return False
    return re.search(r"^\s*(from moto[\s.]|import moto\b)", source, re.MULTILINE) is not None


def patch_modules() -> list[ModuleType]:
    """Every module of the local cloud that imports moto (the ones that must declare a contract)."""
    package = importlib.import_module(PACKAGE)
    modules = []
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{PACKAGE}."):
        module = importlib.import_module(info.name)
        if touches_moto(module):
            modules.append(module)
    return modules


def enforce(environ: Mapping[str, str], modules: Iterable[ModuleType] | None = None) -> list[str]:
    """Refuse (``MotoContractError``) when moto is not what the patch modules were written for, unless the
    environment sets ``AUTO_REPAIR_LOCAL_ALLOW_MOTO=1``; then the problems are returned for the caller to log.
    Instance attributes are left to the contract test: scanning moto's sources would slow every start."""
    found = [
        p
        for module in (patch_modules() if modules is None else modules)
        for p in problems(module, instance_attributes=False)
    ]
    if found and environ.get(ALLOW_ENV) != "1":
        raise MotoContractError(
            "moto does not match what the local cloud's patches were written for "
            f"(set {ALLOW_ENV}=1 to start anyway; see docs/ARCHITECTURE.md, 'Upgrading moto'):\n  "
            + "\n  ".join(found)
        )
    return found
