"""Patches moto's CloudFormation API layer: capabilities and ValidateTemplate.

Wraps ``moto.cloudformation.responses.CloudFormationResponse.create_stack``, ``.update_stack`` and
``.create_change_set`` (capabilities) and replaces ``.validate_template``. AWS behaviour:
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/control-access-with-iam.html#using-iam-capabilities and
https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ValidateTemplate.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation import models as cfn_models
from moto.cloudformation import responses as cfn_responses
from moto.cloudformation.exceptions import CloudFormationError, ValidationError

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.cloudformation.responses.CloudFormationResponse.create_stack()",
    "moto.cloudformation.responses.CloudFormationResponse.update_stack()",
    "moto.cloudformation.responses.CloudFormationResponse.create_change_set()",
    "moto.cloudformation.responses.CloudFormationResponse.validate_template()",
    "moto.cloudformation.responses.CloudFormationResponse._get_param(param_name)",
    "moto.cloudformation.responses.CloudFormationResponse._get_bool_param(param_name)",
    "moto.cloudformation.responses.CloudFormationResponse._get_stack_from_s3_url(template_url)",
    "moto.cloudformation.responses.CloudFormationResponse.cloudformation_backend",
    "moto.cloudformation.models.CloudFormationBackend.validate_template(template)",
    "moto.cloudformation.models.CloudFormationBackend.get_stack(name_or_stack_id)",
    "moto.cloudformation.models.Stack.parse_template(template)",
    "moto.cloudformation.exceptions.CloudFormationError",
    "moto.cloudformation.exceptions.ValidationError(name_or_id, message)",
    "moto.core.responses.ActionResult(result)",
)

_IAM_NAME_PROPERTIES = {
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::User": "UserName",
    "AWS::IAM::Group": "GroupName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
}
_IAM_TYPES = {
    *_IAM_NAME_PROPERTIES,
    "AWS::IAM::Policy",
    "AWS::IAM::AccessKey",
    "AWS::IAM::UserToGroupAddition",
}


def required_capabilities(template: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(capabilities, resource types needing them), by CloudFormation's rules for IAM resources."""
    named, iam = False, []
    for resource in (template.get("Resources") or {}).values():
        rtype = resource.get("Type", "")
        if rtype in _IAM_TYPES:
            iam.append(rtype)
            if _IAM_NAME_PROPERTIES.get(rtype) in (resource.get("Properties") or {}):
                named = True
    if not iam:
        return [], []
    return (["CAPABILITY_NAMED_IAM"] if named else ["CAPABILITY_IAM"]), sorted(set(iam))


def _template_dict(body: str | None) -> dict[str, Any]:
    try:
        parsed = cfn_models.Stack.parse_template(body) if body else {}
    except Exception:  # malformed templates are reported by the call itself
        return {}
    return parsed if isinstance(parsed, dict) else {}


class InsufficientCapabilities(CloudFormationError):
    code = "InsufficientCapabilitiesException"


def _check_capabilities(self: Any) -> None:
    body = self._get_param("TemplateBody")
    if not body and self._get_param("TemplateURL"):
        body = self._get_stack_from_s3_url(self._get_param("TemplateURL"))
    if not body and self._get_bool_param("UsePreviousTemplate", False):
        body = self.cloudformation_backend.get_stack(self._get_param("StackName")).template
    needed, _ = required_capabilities(_template_dict(body))
    given = set(self._get_param("Capabilities", []) or [])
    if needed and not (
        set(needed) & given or (needed == ["CAPABILITY_IAM"] and "CAPABILITY_NAMED_IAM" in given)
    ):
        # AWS refuses before doing anything; moto did not check, so a missing --capabilities went unnoticed.
        raise InsufficientCapabilities(f"Requires capabilities : [{needed[0]}]")


def _template_parameters(template: dict[str, Any]) -> list[dict[str, Any]]:
    """ValidateTemplate's Parameters list, from the template's Parameters section."""
    parameters = []
    for key, spec in (template.get("Parameters") or {}).items():
        item: dict[str, Any] = {
            "ParameterKey": key,
            "NoEcho": str(spec.get("NoEcho", False)).lower() == "true",
        }
        if "Default" in spec:
            item["DefaultValue"] = str(spec["Default"])
        if "Description" in spec:
            item["Description"] = spec["Description"]
        parameters.append(item)
    return parameters


def _patch_responses() -> None:
    responses = cfn_responses.CloudFormationResponse
    orig_validate = responses.validate_template

    for action in ("create_stack", "update_stack", "create_change_set"):
        original = getattr(responses, action)

        def wrapped(self: Any, _original: Any = original) -> Any:
            _check_capabilities(self)
            return _original(self)

        setattr(responses, action, wrapped)

    def validate_template(self: Any) -> Any:
        from moto.core.responses import ActionResult

        body = self._get_param("TemplateBody")
        if self._get_param("TemplateURL"):
            body = self._get_stack_from_s3_url(self._get_param("TemplateURL"))
        matches = self.cloudformation_backend.validate_template(body)
        # Only cfn-lint errors fail (AWS does not reject a template for lint warnings), and the message is passed
        # as a message (moto passed it as a stack id: "Stack with id <message> does not exist").
        errors = [m for m in matches if str(getattr(getattr(m, "rule", None), "id", "E")).startswith("E")]
        if errors:
            raise ValidationError(message=f"Template format error: {errors[0].message}")
        template = _template_dict(body)
        if not template:
            return orig_validate(self)
        parameters = _template_parameters(template)
        capabilities, types = required_capabilities(template)
        result: dict[str, Any] = {"Parameters": parameters, "Capabilities": capabilities}
        if template.get("Description"):
            result["Description"] = template["Description"]
        if capabilities:
            result["CapabilitiesReason"] = (
                f"The following resource(s) require capabilities: [{', '.join(types)}]"
            )
        return ActionResult(result)

    responses.validate_template = validate_template
