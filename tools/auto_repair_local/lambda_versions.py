"""Versions, aliases, revisions, SnapStart and provisioned concurrency as Lambda keeps them.

moto 5.2.5 stores versions (with their own memory) and aliases, but:

* functions have no ``RevisionId`` and no call checks one, so an optimistic-lock guard (``RevisionId`` on
  UpdateFunctionConfiguration / UpdateFunctionCode / PublishVersion / UpdateAlias) never fails;
  ``PublishVersion`` ignores ``CodeSha256``; an alias keeps one ``RevisionId`` forever;
* ``SnapStart`` is always reported as ``None``/``Off`` and a published version is ``Active`` at once;
* the provisioned-concurrency APIs answer 404 "Not yet implemented".

This module fills those gaps: every function and version has a ``RevisionId`` that changes with each change of
its code or configuration (aliases likewise), a stale one fails with ``PreconditionFailedException`` (412); a
``CodeSha256`` that is not $LATEST's fails as on AWS; ``SnapStart: {ApplyOn: PublishedVersions}`` is kept and
a version published with it stays ``Pending`` for ``AUTO_REPAIR_LOCAL_SNAPSTART_SECONDS`` (default 3) while
"optimizing"; Put/Get/Delete/ListProvisionedConcurrencyConfigs keep configs per alias or version, ``IN_PROGRESS``
for ``AUTO_REPAIR_LOCAL_PC_SECONDS`` (default 1) after each put and after the alias they sit on moves to
another version (Lambda re-allocates then), ``READY`` afterwards. The runtime does not pre-warm environments
for provisioned concurrency; only the configuration and its status are modelled.

``patch()`` applies the same changes to moto in-process (functional tests) and returns an undo function.

Patches (see ``MOTO_TOUCHPOINTS``; every replacement is listed in ``_REPLACEMENTS``). AWS behaviour:
https://docs.aws.amazon.com/lambda/latest/dg/configuration-versions.html,
https://docs.aws.amazon.com/lambda/latest/dg/snapstart.html and
https://docs.aws.amazon.com/lambda/latest/dg/provisioned-concurrency.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from moto.awslambda import urls
from moto.awslambda.exceptions import (
    InvalidParameterValueException,
    LambdaClientError,
    PreconditionFailedException,
)
from moto.awslambda.models import LambdaAlias, LambdaBackend, LambdaFunction, LambdaStorage
from moto.awslambda.responses import LambdaResponse

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.awslambda.models.LambdaFunction.get_configuration(on_create)",
    "moto.awslambda.models.LambdaFunction.update_configuration(config_updates)",
    "moto.awslambda.models.LambdaFunction.update_function_code(updated_spec)",
    "moto.awslambda.models.LambdaFunction#version",
    "moto.awslambda.models.LambdaFunction#code_sha_256",
    "moto.awslambda.models.LambdaFunction#function_name",
    "moto.awslambda.models.LambdaFunction#function_arn",
    "moto.awslambda.models.LambdaFunction#account_id",
    "moto.awslambda.models.LambdaFunction#region",
    "moto.awslambda.models.LambdaBackend.create_function(spec)",
    "moto.awslambda.models.LambdaBackend.update_function_configuration(function_name, qualifier, body)",
    "moto.awslambda.models.LambdaBackend.update_function_code(function_name, qualifier, body)",
    "moto.awslambda.models.LambdaBackend.get_function(function_name_or_arn, qualifier)",
    "moto.awslambda.models.LambdaBackend.get_alias(name, function_name)",
    "moto.awslambda.models.LambdaStorage.publish_version(name_or_arn, description)",
    "moto.awslambda.models.LambdaStorage.get_function_by_name_or_arn_forbid_qualifier(name_or_arn)",
    "moto.awslambda.models.LambdaStorage#_functions",
    "moto.awslambda.models.LambdaAlias.update(description, function_version, routing_config)",
    "moto.awslambda.models.LambdaAlias.to_json()",
    "moto.awslambda.models.LambdaAlias#arn",
    "moto.awslambda.models.LambdaAlias#name",
    "moto.awslambda.models.LambdaAlias#function_version",
    "moto.awslambda.models.LambdaAlias#revision_id",
    "moto.awslambda.responses.LambdaResponse.publish_version()",
    "moto.awslambda.responses.LambdaResponse.update_alias()",
    "moto.awslambda.responses.LambdaResponse.dispatch()",
    "moto.awslambda.responses.LambdaResponse#backend",
    "moto.awslambda.responses.LambdaResponse#path",
    "moto.awslambda.responses.LambdaResponse#body",
    "moto.awslambda.responses.LambdaResponse#querystring",
    "moto.awslambda.urls.url_paths",
    "moto.awslambda.exceptions.InvalidParameterValueException(message)",
    "moto.awslambda.exceptions.LambdaClientError(error, message)",
    "moto.awslambda.exceptions.PreconditionFailedException(message)",
)

SNAPSTART_SECONDS = float(os.environ.get("AUTO_REPAIR_LOCAL_SNAPSTART_SECONDS", "3"))
PC_SECONDS = float(os.environ.get("AUTO_REPAIR_LOCAL_PC_SECONDS", "1"))
PC_PATH = r"{0}/(?P<api_version>[^/]+)/functions/(?P<function_name>[\w_:%-]+)/provisioned-concurrency/?$"

_REVISION = "_local_revision_id"
_SNAPSTART = "_local_snapstart"
_PENDING_UNTIL = "_local_pending_until"
_STALE = (
    "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to "
    "retrieve the latest Revision Id"
)


class ProvisionedConcurrencyConfigNotFoundError(LambdaClientError):
    code = 404

    def __init__(self, message: str) -> None:
        super().__init__("ProvisionedConcurrencyConfigNotFoundException", message)


# (account, region, function name, qualifier) -> {"requested": int, "readyAt": float, "lastModified": str}
_provisioned: dict[tuple[str, str, str, str], dict[str, Any]] = {}
_pc_lock = threading.Lock()


def _revision(obj: Any) -> str:
    value = getattr(obj, _REVISION, None)
    if not value:
        value = str(uuid.uuid4())
        setattr(obj, _REVISION, value)
    return value


def _new_revision(obj: Any) -> None:
    setattr(obj, _REVISION, str(uuid.uuid4()))


def _check(expected: str | None, current: str) -> None:
    if expected and expected != current:
        raise PreconditionFailedException(_STALE)


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _pc_view(key: tuple[str, str, str, str], item: dict[str, Any], arn: str | None = None) -> dict[str, Any]:
    ready = time.monotonic() >= item["readyAt"]
    view = {
        "RequestedProvisionedConcurrentExecutions": item["requested"],
        "AvailableProvisionedConcurrentExecutions": item["requested"] if ready else 0,
        "AllocatedProvisionedConcurrentExecutions": item["requested"] if ready else 0,
        "Status": "READY" if ready else "IN_PROGRESS",
        "LastModified": item["lastModified"],
    }
    if arn:
        view["FunctionArn"] = arn
    return view


# moto's own methods, keyed "Class.method", captured by patch() before it replaces them (the replacements delegate).
_moto: dict[str, Any] = {}


# -- revisions and SnapStart on the models ----------------------------------------------------------------------
def get_configuration(self: LambdaFunction, on_create: bool = False) -> dict[str, Any]:
    config = _moto["LambdaFunction.get_configuration"](self, on_create)
    config["RevisionId"] = _revision(self)
    apply_on = getattr(self, _SNAPSTART, "None")
    published = str(self.version) != "$LATEST"
    config["SnapStart"] = {
        "ApplyOn": apply_on,
        "OptimizationStatus": "On" if apply_on == "PublishedVersions" and published else "Off",
    }
    if time.monotonic() < getattr(self, _PENDING_UNTIL, 0.0):
        config.update(State="Pending", StateReason="Optimizing the function for SnapStart",
                      StateReasonCode="Creating")
    return config


def update_configuration(self: LambdaFunction, config_updates: dict[str, Any]) -> dict[str, Any]:
    snap = config_updates.get("SnapStart")
    if isinstance(snap, dict):
        setattr(self, _SNAPSTART, str(snap.get("ApplyOn") or "None"))
    _new_revision(self)
    return _moto["LambdaFunction.update_configuration"](self, config_updates)


def update_function_code(self: LambdaFunction, updated_spec: dict[str, Any]) -> Any:
    if not updated_spec.get("DryRun"):
        _new_revision(self)
    return _moto["LambdaFunction.update_function_code"](self, updated_spec)


def create_function(self: LambdaBackend, spec: dict[str, Any]) -> LambdaFunction:
    fn = _moto["LambdaBackend.create_function"](self, spec)
    setattr(fn, _SNAPSTART, str((spec.get("SnapStart") or {}).get("ApplyOn") or "None"))
    return fn


def backend_update_configuration(
    self: LambdaBackend, function_name: str, qualifier: str, body: dict[str, Any]
) -> Any:
    _check(body.get("RevisionId"), _revision(self.get_function(function_name, qualifier)))
    return _moto["LambdaBackend.update_function_configuration"](self, function_name, qualifier, body)


def backend_update_code(self: LambdaBackend, function_name: str, qualifier: str, body: dict[str, Any]) -> Any:
    _check(body.get("RevisionId"), _revision(self.get_function(function_name, qualifier)))
    return _moto["LambdaBackend.update_function_code"](self, function_name, qualifier, body)


def publish_version(self: LambdaStorage, name_or_arn: str, description: str = "") -> Any:
    function = self.get_function_by_name_or_arn_forbid_qualifier(name_or_arn)
    before = len(self._functions.get(function.function_name, {}).get("versions", []))
    version = _moto["LambdaStorage.publish_version"](self, name_or_arn, description)
    after = len(self._functions.get(function.function_name, {}).get("versions", []))
    if version is not None and after > before:
        _new_revision(version)
        if getattr(version, _SNAPSTART, "None") == "PublishedVersions":
            setattr(version, _PENDING_UNTIL, time.monotonic() + SNAPSTART_SECONDS)
    return version


def _reallocate_provisioned(alias: LambdaAlias) -> None:
    # Lambda re-allocates the alias's provisioned concurrency on the new version.
    account, region = alias.arn.split(":")[4], alias.arn.split(":")[3]
    function_name = alias.arn.split(":")[6]
    with _pc_lock:
        item = _provisioned.get((account, region, function_name, alias.name))
        if item:
            item["readyAt"] = time.monotonic() + PC_SECONDS
            item["lastModified"] = _iso_now()


def alias_update(self: LambdaAlias, description: Any, function_version: Any, routing_config: Any) -> None:
    moved = function_version is not None and function_version != self.function_version
    _moto["LambdaAlias.update"](self, description, function_version, routing_config)
    self.revision_id = str(uuid.uuid4())
    if moved:
        _reallocate_provisioned(self)


def alias_json(self: LambdaAlias) -> dict[str, Any]:
    data = _moto["LambdaAlias.to_json"](self)
    if not data.get("RoutingConfig"):
        data.pop("RoutingConfig", None)
    return data


# -- preconditions on the API -----------------------------------------------------------------------------------
def publish_version_response(self: LambdaResponse) -> Any:
    function_name = unquote(self.path.split("/")[-2])
    body = json.loads(self.body or "{}") if self.body else {}
    latest = self.backend.get_function(function_name)
    _check(body.get("RevisionId"), _revision(latest))
    sha = body.get("CodeSha256")
    if sha and sha != latest.code_sha_256:
        raise InvalidParameterValueException(
            f"CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({latest.code_sha_256}). "
            "Please try again with the CodeSHA256 in $LATEST."
        )
    return _moto["LambdaResponse.publish_version"](self)


def update_alias_response(self: LambdaResponse) -> Any:
    function_name = unquote(self.path.rsplit("/")[-3])
    alias_name = unquote(self.path.rsplit("/", 2)[-1])
    body = json.loads(self.body or "{}") if self.body else {}
    _check(body.get("RevisionId"), self.backend.get_alias(alias_name, function_name).revision_id)
    return _moto["LambdaResponse.update_alias"](self)


# -- provisioned concurrency ------------------------------------------------------------------------------------
def _target(self: LambdaResponse) -> tuple[LambdaFunction, str | None]:
    fn = self.backend.get_function(unquote(self.path.rstrip("/").split("/")[-2]))
    qualifier = (self.querystring.get("Qualifier") or [None])[0]
    return fn, qualifier


def _resolved(self: LambdaResponse, fn: LambdaFunction, qualifier: str | None) -> str:
    if not qualifier or qualifier == "$LATEST":
        raise InvalidParameterValueException(
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
        )
    self.backend.get_function(fn.function_name, qualifier)  # ResourceNotFound for an unknown qualifier
    return qualifier


def put_provisioned_concurrency_config(self: LambdaResponse) -> Any:
    fn, qualifier = _target(self)
    qualifier = _resolved(self, fn, qualifier)
    requested = int(json.loads(self.body or "{}").get("ProvisionedConcurrentExecutions", 0))
    if requested < 1:
        raise InvalidParameterValueException("ProvisionedConcurrentExecutions must be at least 1.")
    key = (fn.account_id, fn.region, fn.function_name, qualifier)
    with _pc_lock:
        _provisioned[key] = {"requested": requested, "readyAt": time.monotonic() + PC_SECONDS,
                             "lastModified": _iso_now()}
        view = _pc_view(key, _provisioned[key])
    return 202, {"status": 202}, json.dumps(view)


def get_provisioned_concurrency_config(self: LambdaResponse) -> Any:
    fn, qualifier = _target(self)
    with _pc_lock:
        item = _provisioned.get((fn.account_id, fn.region, fn.function_name, qualifier or ""))
        if item is None:
            raise ProvisionedConcurrencyConfigNotFoundError(
                f"No Provisioned Concurrency Config found for this function: {fn.function_arn}:{qualifier}"
            )
        view = _pc_view((fn.account_id, fn.region, fn.function_name, qualifier or ""), item)
    return 200, {}, json.dumps(view)


def delete_provisioned_concurrency_config(self: LambdaResponse) -> Any:
    fn, qualifier = _target(self)
    with _pc_lock:
        _provisioned.pop((fn.account_id, fn.region, fn.function_name, qualifier or ""), None)
    return 204, {"status": 204}, ""


def list_provisioned_concurrency_configs(self: LambdaResponse) -> Any:
    fn, _ = _target(self)
    with _pc_lock:
        configs = [
            _pc_view(key, item, f"{fn.function_arn}:{key[3]}")
            for key, item in sorted(_provisioned.items())
            if key[:3] == (fn.account_id, fn.region, fn.function_name)
        ]
    return 200, {}, json.dumps({"ProvisionedConcurrencyConfigs": configs})


# (owner, attribute, replacement), in the order patch() installs them.
_REPLACEMENTS: tuple[tuple[type, str, Callable[..., Any]], ...] = (
    (LambdaFunction, "get_configuration", get_configuration),
    (LambdaFunction, "update_configuration", update_configuration),
    (LambdaFunction, "update_function_code", update_function_code),
    (LambdaBackend, "create_function", create_function),
    (LambdaBackend, "update_function_configuration", backend_update_configuration),
    (LambdaBackend, "update_function_code", backend_update_code),
    (LambdaStorage, "publish_version", publish_version),
    (LambdaAlias, "update", alias_update),
    (LambdaAlias, "to_json", alias_json),
    (LambdaResponse, "publish_version", publish_version_response),
    (LambdaResponse, "update_alias", update_alias_response),
    (LambdaResponse, "put_provisioned_concurrency_config", put_provisioned_concurrency_config),
    (LambdaResponse, "get_provisioned_concurrency_config", get_provisioned_concurrency_config),
    (LambdaResponse, "delete_provisioned_concurrency_config", delete_provisioned_concurrency_config),
    (LambdaResponse, "list_provisioned_concurrency_configs", list_provisioned_concurrency_configs),
)


def patch() -> Callable[[], None]:
    """Install the changes on moto's classes; the returned function restores the originals."""
    saved: list[tuple[Any, str, Any, bool]] = []
    for owner, name, replacement in _REPLACEMENTS:
        current = getattr(owner, name, None)
        if current is not replacement:  # patched twice: keep delegating to moto's method, not to ourselves
            _moto[f"{owner.__name__}.{name}"] = current
    for owner, name, value in _REPLACEMENTS:
        saved.append((owner, name, vars(owner).get(name), name in vars(owner)))
        setattr(owner, name, value)
    added_path = PC_PATH not in urls.url_paths
    urls.url_paths[PC_PATH] = LambdaResponse.dispatch

    def undo() -> None:
        for owner, name, value, had in reversed(saved):
            if had:
                setattr(owner, name, value)
            else:
                delattr(owner, name)
        if added_path:
            urls.url_paths.pop(PC_PATH, None)
        with _pc_lock:
            _provisioned.clear()

    return undo


def install(ctx: Any) -> None:
    patch()
