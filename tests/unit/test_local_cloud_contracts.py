"""The local cloud's moto contracts: each patch module still fits the installed moto, and a misfit is named.

One parametrised case per patch module (every module of auto_repair_local that imports moto), so a moto upgrade
shows up as a list of failures, each naming the patch module and the moto internal it lost. Procedure:
docs/ARCHITECTURE.md, "Upgrading moto".
"""

from __future__ import annotations

import ast
import inspect
from types import ModuleType, SimpleNamespace

import pytest

from auto_repair_local import moto_contract, server
from auto_repair_local.moto_contract import MotoContractError, Touchpoint

PATCH_MODULES = moto_contract.patch_modules()


def _short(module: ModuleType) -> str:
    return module.__name__.removeprefix("auto_repair_local.")


def _moto_imports(module: ModuleType) -> list[str]:
    """Dotted names of everything the module imports from moto (top level and inside functions)."""
    names = []
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "moto":
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names if alias.name.split(".")[0] == "moto"]
    return names


def test_every_extension_the_server_installs_is_a_patch_module_with_a_contract():
    # GIVEN the extensions the server installs WHEN listing the patch modules THEN each one is among them
    patch_names = {m.__name__ for m in PATCH_MODULES}
    missing = [name for name in server.EXTENSIONS if f"auto_repair_local.{name}" not in patch_names]
    assert missing == [], f"extensions that import no moto or declare no contract: {missing}"


@pytest.mark.parametrize("module", PATCH_MODULES, ids=_short)
def test_patch_module_fits_the_installed_moto(module: ModuleType):
    # GIVEN a patch module's declared moto versions and touchpoints
    # WHEN checked against the installed moto
    problems = moto_contract.problems(module)
    # THEN nothing is missing (each failure line names the patch module and the moto internal)
    assert problems == [], "moto no longer matches this patch module:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("module", PATCH_MODULES, ids=_short)
def test_every_moto_import_is_a_declared_touchpoint(module: ModuleType):
    # GIVEN what the module imports from moto
    declared = [Touchpoint.parse(t).path for t in module.MOTO_TOUCHPOINTS]
    # WHEN compared with its MOTO_TOUCHPOINTS
    undeclared = [
        name
        for name in _moto_imports(module)
        if not any(path == name or path.startswith(name + ".") for path in declared)
    ]
    # THEN every import is covered, so the declaration cannot silently fall behind the code
    assert undeclared == [], f"{module.__name__} imports moto names missing from MOTO_TOUCHPOINTS: {undeclared}"


@pytest.mark.parametrize("module", PATCH_MODULES, ids=_short)
def test_patch_module_header_names_its_moto_range_and_the_aws_behaviour(module: ModuleType):
    # GIVEN a patch module WHEN reading its docstring THEN it states its moto range and (but for the server and
    # the fault injector, which model nothing of AWS) the AWS documentation it implements
    doc = module.__doc__ or ""
    assert module.MOTO_VERSIONS in doc
    if _short(module) not in ("server", "faults"):
        assert "https://docs.aws.amazon.com/" in doc


# -- the checker itself: a broken touchpoint is named ---------------------------------------------------------


def test_a_moto_internal_removed_is_reported_with_the_patch_module_that_needs_it(monkeypatch):
    # GIVEN moto without LambdaAlias.update (as if an upgrade renamed it)
    from moto.awslambda.models import LambdaAlias

    from auto_repair_local import lambda_versions

    monkeypatch.delattr(LambdaAlias, "update")
    # WHEN the lambda_versions contract is checked
    problems = moto_contract.problems(lambda_versions)
    # THEN the failure names the patch module and the missing internal
    assert problems == [
        "auto_repair_local.lambda_versions: moto.awslambda.models.LambdaAlias.update is missing "
        "(moto.awslambda.models.LambdaAlias has no attribute 'update')"
    ]


@pytest.mark.parametrize(
    ("touchpoint", "expected"),
    [
        ("moto.awslambda.models.LambdaAlias.update(description, function_version, routing_config)", None),
        ("moto.awslambda.models.LambdaAlias#revision_id", None),
        ("moto.awslambda.models.LambdaFunction#memory_size", None),
        ("moto.cloudformation.parsing.ResourceMap", None),
        ("moto.no_such_service.models.Thing", "moto.no_such_service.models.Thing is missing"),
        ("moto.awslambda.models.NoSuchClass", "moto.awslambda.models.NoSuchClass is missing"),
        (
            "moto.awslambda.models.LambdaAlias.update(description, new_param)",
            "moto.awslambda.models.LambdaAlias.update no longer takes parameter(s) new_param",
        ),
        (
            "moto.awslambda.models.lambda_backends(account_id)",
            "moto.awslambda.models.lambda_backends is no longer callable",
        ),
        (
            "moto.awslambda.models.LambdaAlias#no_such_attribute",
            "moto.awslambda.models.LambdaAlias instances no longer carry 'no_such_attribute'",
        ),
        (
            "moto.awslambda.models.lambda_backends#anything",
            "moto.awslambda.models.lambda_backends is no longer a class",
        ),
    ],
)
def test_touchpoint_checks(touchpoint: str, expected: str | None):
    # GIVEN a touchpoint WHEN checked THEN the problem (if any) says what changed
    problem = moto_contract.touchpoint_problem(touchpoint)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(expected)


@pytest.mark.parametrize("bad", ["boto3.client", "moto.x.Y(", "moto.x.Y#a#b", "moto", "moto.x.Y(a-b)"])
def test_a_malformed_touchpoint_is_refused(bad: str):
    with pytest.raises(ValueError, match="not a moto touchpoint"):
        Touchpoint.parse(bad)


@pytest.mark.parametrize(
    ("version", "spec", "inside"),
    [
        ("5.2.5", ">=5.2.5,<5.3", True),
        ("5.2.9", ">=5.2.5,<5.3", True),
        ("5.2.4", ">=5.2.5,<5.3", False),
        ("5.3.0", ">=5.2.5,<5.3", False),
        ("5.3.0.dev1", ">=5.2.5,<5.3", False),
        ("6.0", ">=5.2.5", True),
        ("5.2.5", "==5.2.5", True),
        ("5.2.6", "==5.2.5", False),
    ],
)
def test_version_ranges(version: str, spec: str, inside: bool):
    assert moto_contract.version_in_range(version, spec) is inside


@pytest.mark.parametrize("spec", ["~=5.2", ">=five", "5.2.5"])
def test_a_malformed_version_range_is_refused(spec: str):
    with pytest.raises(ValueError):
        moto_contract.version_in_range("5.2.5", spec)


def test_a_moto_outside_the_declared_range_is_reported_per_module():
    from auto_repair_local import sns_outbox

    # GIVEN a moto release newer than the module was written for WHEN checked THEN the module and range are named
    assert moto_contract.problems(sns_outbox, moto="5.3.0") == [
        "auto_repair_local.sns_outbox: written for moto >=5.2.5,<5.3, installed moto is 5.3.0"
    ]


# -- the server refuses to start on a moto it was not written for ---------------------------------------------


@pytest.fixture
def newer_moto(monkeypatch):
    monkeypatch.setattr(moto_contract, "moto_version", lambda: "5.3.0")


def test_enforce_refuses_a_moto_outside_the_range_naming_every_patch_module(newer_moto):
    with pytest.raises(MotoContractError) as refused:
        moto_contract.enforce({})
    message = str(refused.value)
    assert moto_contract.ALLOW_ENV in message
    for module in PATCH_MODULES:
        assert f"{module.__name__}: written for moto" in message


def test_enforce_with_the_override_returns_the_problems_instead(newer_moto):
    problems = moto_contract.enforce({moto_contract.ALLOW_ENV: "1"})
    assert len(problems) == len(PATCH_MODULES)


def test_enforce_passes_on_the_pinned_moto():
    assert moto_contract.enforce({}) == []


def test_server_refuses_to_start_and_names_the_patch(newer_moto, monkeypatch, tmp_path, capsys):
    # GIVEN a moto outside the declared range and no override
    monkeypatch.delenv(moto_contract.ALLOW_ENV, raising=False)
    for key in ("MOTO_PORT", "MOTO_ACCOUNT_ID", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, "placeholder")  # serve() sets these; monkeypatch restores them afterwards
    installed: list[str] = []
    monkeypatch.setattr(server, "importlib", SimpleNamespace(import_module=installed.append))
    started: list[object] = []
    # by dotted path: monkeypatch imports moto.server, which no earlier test on this worker may have imported
    monkeypatch.setattr("moto.server.ThreadedMotoServer", lambda **kw: started.append(kw))
    # WHEN the server is started
    code = server.main(["--port", "45999", "--state-dir", str(tmp_path)])
    # THEN it exits non-zero before installing a patch or serving, naming the patch modules and the override
    assert code == 2
    assert installed == [] and started == []
    err = capsys.readouterr().err
    assert "refusing to start" in err
    assert "auto_repair_local.lambda_versions: written for moto >=5.2.5,<5.3, installed moto is 5.3.0" in err
    assert moto_contract.ALLOW_ENV in err
