"""Patches moto's template parser: unsupported types fail, every type updates, events are recorded.

Replaces ``moto.cloudformation.parsing.parse_and_create_resource``, ``.parse_and_update_resource``,
``.ResourceMap._delete_resource`` (also: a conditional ``DeletionPolicy: Retain`` keeps the resource) and
``.ResourceMap.update`` (each delegating to moto's original). AWS behaviour:
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks-update-behaviors.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation import parsing
from moto.cloudformation.exceptions import ValidationError

from ._shared import _PREVIOUS_JSON, _props
from .events import _add_resource_event, _failure_reason, _physical_id
from .updaters import DELETERS, POST_CREATE, UPDATERS

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.cloudformation.parsing.parse_and_create_resource(logical_id, resource_json, resources_map, account_id, region_name)",
    "moto.cloudformation.parsing.parse_and_update_resource(logical_id, resource_json, resources_map, account_id, region_name)",
    "moto.cloudformation.parsing.ResourceMap._delete_resource(parsed_resource, resource_json)",
    "moto.cloudformation.parsing.ResourceMap.update(template, parameters)",
    "moto.cloudformation.parsing.NULL_MODELS",
    "moto.cloudformation.parsing.get_model_map()",
    "moto.cloudformation.parsing.clean_json(resource_json, resources_map)",
    "moto.cloudformation.parsing.parse_resource_and_generate_name(logical_id, resource_json, resources_map)",
    "moto.cloudformation.parsing.resource_class_from_type(resource_type)",
    "moto.cloudformation.parsing.ResourceMap#lazy_condition_map",
    "moto.cloudformation.parsing.ResourceMap#_parsed_resources",
    "moto.cloudformation.parsing.ResourceMap#_resource_json_map",
    "moto.cloudformation.parsing.ResourceMap#_account_id",
    "moto.cloudformation.parsing.ResourceMap#_region_name",
    "moto.cloudformation.exceptions.ValidationError(name_or_id, message)",
)

# moto's own functions, captured by _patch_parsing before it replaces them (the replacements delegate to them).
_moto: dict[str, Any] = {}


def _is_unsupported(resource_type: str) -> bool:
    return (
        resource_type not in parsing.NULL_MODELS
        and not resource_type.startswith("Custom::")
        and resource_type not in parsing.get_model_map()
    )


def _create_with_fixes(
    logical_id: str, resource_json: dict[str, Any], resources_map: Any, account_id: str, region_name: str
) -> Any:
    resource_type = resource_json["Type"]
    if _is_unsupported(resource_type):
        # moto would skip it and report success; AWS refuses unknown types. Fail loudly instead.
        raise ValidationError(
            message=f"Unrecognized resource types: [{resource_type}] (not supported by the local cloud)"
        )
    resource = _moto["create"](logical_id, resource_json, resources_map, account_id, region_name)
    if resource is not None and resource_type in POST_CREATE:
        cleaned = parsing.clean_json(resource_json, resources_map)
        POST_CREATE[resource_type](resource, _props(cleaned), account_id, region_name)
    return resource


def parse_and_create_resource(
    logical_id: str, resource_json: dict[str, Any], resources_map: Any, account_id: str, region_name: str
) -> Any:
    resource_type = resource_json["Type"]
    condition = resource_json.get("Condition")
    if condition and not resources_map.lazy_condition_map[condition]:
        return None
    _add_resource_event(resources_map, logical_id, resource_type, "CREATE_IN_PROGRESS")
    try:
        resource = _create_with_fixes(logical_id, resource_json, resources_map, account_id, region_name)
    except Exception as exc:
        _add_resource_event(
            resources_map, logical_id, resource_type, "CREATE_FAILED", reason=_failure_reason(exc)
        )
        raise
    _add_resource_event(resources_map, logical_id, resource_type, "CREATE_COMPLETE", _physical_id(resource))
    return resource


def parse_and_update_resource(
    logical_id: str, resource_json: dict[str, Any], resources_map: Any, account_id: str, region_name: str
) -> Any:
    resource_type = resource_json["Type"]
    original = resources_map._parsed_resources.get(logical_id)
    _add_resource_event(
        resources_map, logical_id, resource_type, "UPDATE_IN_PROGRESS", _physical_id(original)
    )
    try:
        resource = _update_resource(
            logical_id, resource_json, resources_map, account_id, region_name, original
        )
    except Exception as exc:
        _add_resource_event(
            resources_map,
            logical_id,
            resource_type,
            "UPDATE_FAILED",
            _physical_id(original),
            _failure_reason(exc),
        )
        raise
    _add_resource_event(resources_map, logical_id, resource_type, "UPDATE_COMPLETE", _physical_id(resource))
    return resource


def _delete_previous(
    resources_map: Any, logical_id: str, resource_json: dict[str, Any], original: Any
) -> None:
    # A replacement needs the *old* properties to delete the old resource (kept by ResourceMap.update below).
    old_json = getattr(resources_map, _PREVIOUS_JSON, {}).get(logical_id, resource_json)
    resources_map._delete_resource(original, old_json)


def _update_in_place(
    logical_id: str,
    resource_json: dict[str, Any],
    resources_map: Any,
    account_id: str,
    region_name: str,
    original: Any,
) -> Any:
    resource_class, cleaned, new_name = parsing.parse_resource_and_generate_name(
        logical_id, resource_json, resources_map
    )
    if (
        not resource_class.cloudformation_name_type()
        or resource_class.cloudformation_name_type() not in _props(cleaned)
    ):
        new_name = _physical_id(original) or new_name  # keep the generated name on an in-place update
    return UPDATERS[resource_json["Type"]](original, new_name, cleaned, account_id, region_name)


def _update_by_moto_or_replace(
    logical_id: str,
    resource_json: dict[str, Any],
    resources_map: Any,
    account_id: str,
    region_name: str,
    original: Any,
) -> Any:
    resource_class = parsing.resource_class_from_type(resource_json["Type"])
    if resource_class is not None and not hasattr(
        resource_class.update_from_cloudformation_json, "__isabstractmethod__"
    ):
        return _moto["update"](logical_id, resource_json, resources_map, account_id, region_name)
    # moto has no update for this type (and would store None): replace it.
    _delete_previous(resources_map, logical_id, resource_json, original)
    return _moto["create"](logical_id, resource_json, resources_map, account_id, region_name)


def _update_resource(
    logical_id: str,
    resource_json: dict[str, Any],
    resources_map: Any,
    account_id: str,
    region_name: str,
    original: Any,
) -> Any:
    resource_type = resource_json["Type"]
    condition = resource_json.get("Condition")
    if condition and not resources_map.lazy_condition_map[condition]:
        # The condition turned false: the resource goes away.
        if original is not None:
            _delete_previous(resources_map, logical_id, resource_json, original)
        return None
    if original is None:
        # It did not exist (e.g. condition was false before): create it.
        return _moto["create"](logical_id, resource_json, resources_map, account_id, region_name)
    update = _update_in_place if resource_type in UPDATERS else _update_by_moto_or_replace
    resource = update(logical_id, resource_json, resources_map, account_id, region_name, original)
    if resource is not None:
        resource.cf_resource_type = resource_type
        resource.logical_resource_id = logical_id
    return resource


def _resolved_policy(self: Any, value: Any) -> Any:
    """DeletionPolicy may be an ``Fn::If`` on a condition, as AWS allows
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html); moto
    compared the object to "Retain" and deleted a resource the template keeps."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        name, yes, no = value["Fn::If"]
        return _resolved_policy(self, yes if self.lazy_condition_map[name] else no)
    return value


def _delete_resource(self: Any, parsed_resource: Any, resource_json: dict[str, Any]) -> None:
    logical_id = getattr(parsed_resource, "logical_resource_id", None) or "?"
    resource_type = resource_json.get("Type", "")
    physical = _physical_id(parsed_resource)
    if _resolved_policy(self, resource_json.get("DeletionPolicy")) == "Retain":
        _add_resource_event(self, logical_id, resource_type, "DELETE_SKIPPED", physical)
        return
    _add_resource_event(self, logical_id, resource_type, "DELETE_IN_PROGRESS", physical)
    try:
        if resource_type in DELETERS:
            DELETERS[resource_type](parsed_resource, resource_json, self._account_id, self._region_name)
        else:
            _moto["delete_resource"](self, parsed_resource, resource_json)
    except Exception as exc:
        _add_resource_event(self, logical_id, resource_type, "DELETE_FAILED", physical, _failure_reason(exc))
        raise
    _add_resource_event(self, logical_id, resource_type, "DELETE_COMPLETE", physical)


def update(self: Any, template: dict[str, Any], parameters: dict[str, Any] | None = None) -> None:
    # Keep the previous resource JSON: a replacement needs the *old* properties to delete the old resource.
    setattr(self, _PREVIOUS_JSON, dict(self._resource_json_map))
    try:
        _moto["map_update"](self, template, parameters)
    finally:
        setattr(self, _PREVIOUS_JSON, {})
    # moto drops resources whose update returned None; also drop resources whose condition became false.
    for key in [k for k, v in self._parsed_resources.items() if v is None]:
        self._parsed_resources.pop(key)


def _patch_parsing() -> None:
    _moto.update(
        create=parsing.parse_and_create_resource,
        update=parsing.parse_and_update_resource,
        delete_resource=parsing.ResourceMap._delete_resource,
        map_update=parsing.ResourceMap.update,
    )
    parsing.parse_and_create_resource = parse_and_create_resource
    parsing.parse_and_update_resource = parse_and_update_resource
    parsing.ResourceMap._delete_resource = _delete_resource
    parsing.ResourceMap.update = update
