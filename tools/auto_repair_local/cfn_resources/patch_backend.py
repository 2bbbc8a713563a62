"""Patches moto's CloudFormation backend: rollback, exports, change sets, 'No updates'.

Wraps ``moto.cloudformation.models.CloudFormationBackend.create_stack``, ``.update_stack`` and
``.execute_change_set``, and ``moto.cloudformation.responses.CloudFormationResponse._validate_different_update``.
AWS behaviour: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks-changesets.html
and https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-stack-exports.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation import models as cfn_models
from moto.cloudformation import responses as cfn_responses
from moto.cloudformation.exceptions import ValidationError

from ._shared import log
from .events import _failure_reason

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.cloudformation.models.CloudFormationBackend.create_stack(name)",
    "moto.cloudformation.models.CloudFormationBackend.update_stack(name, template, role_arn, parameters, tags)",
    "moto.cloudformation.models.CloudFormationBackend.execute_change_set(change_set_name, stack_name)",
    "moto.cloudformation.models.CloudFormationBackend.get_stack(name_or_stack_id)",
    "moto.cloudformation.models.CloudFormationBackend.describe_change_set(change_set_name)",
    "moto.cloudformation.models.CloudFormationBackend._resolve_update_parameters(instance, incoming_params)",
    "moto.cloudformation.models.CloudFormationBackend#stacks",
    "moto.cloudformation.models.CloudFormationBackend#exports",
    "moto.cloudformation.models.Stack.parse_template(template)",
    "moto.cloudformation.models.Stack._parse_template()",
    "moto.cloudformation.models.Stack._create_output_map()",
    "moto.cloudformation.models.Stack._add_stack_event(resource_status, resource_status_reason)",
    "moto.cloudformation.models.Stack#exports",
    "moto.cloudformation.models.Stack#template",
    "moto.cloudformation.models.Stack#template_dict",
    "moto.cloudformation.models.Stack#parameters",
    "moto.cloudformation.models.Stack#tags",
    "moto.cloudformation.models.Stack#status",
    "moto.cloudformation.models.Stack#description",
    "moto.cloudformation.models.Stack#output_map",
    "moto.cloudformation.models.Stack#resource_map",
    "moto.cloudformation.models.Stack#cross_stack_resources",
    "moto.cloudformation.models.Stack#events",
    "moto.cloudformation.models.ChangeSet#stack_id",
    "moto.cloudformation.models.ChangeSet#change_set_type",
    "moto.cloudformation.models.ChangeSet#execution_status",
    "moto.cloudformation.models.ChangeSet#template",
    "moto.cloudformation.models.ChangeSet#parameters",
    "moto.cloudformation.models.Export#exporting_stack_id",
    "moto.cloudformation.models.Export#name",
    "moto.cloudformation.parsing.ResourceMap.delete()",
    "moto.cloudformation.parsing.ResourceMap#cross_stack_resources",
    "moto.cloudformation.parsing.ResourceMap#_resource_json_map",
    "moto.cloudformation.parsing.OutputMap#_output_json_map",
    "moto.cloudformation.responses.CloudFormationResponse._validate_different_update(incoming_params, stack_body, old_stack)",
    "moto.cloudformation.responses.CloudFormationResponse._get_action()",
    "moto.cloudformation.exceptions.ValidationError(name_or_id, message)",
)


def _refresh_exports(backend: Any, stack: Any) -> None:
    """Recompute a stack's outputs/exports and re-register its exports with the backend."""
    stack._parse_template()
    stack.output_map = stack._create_output_map()
    stack.description = stack.template_dict.get("Description")
    new_exports = stack.exports
    others = {name for name, export in backend.exports.items() if export.exporting_stack_id != stack.stack_id}
    clash = [e.name for e in new_exports if e.name in others]
    if clash:
        raise ValidationError(
            stack.stack_id,
            message=f"Export with name {clash[0]} is already exported by stack "
            f"{backend.exports[clash[0]].exporting_stack_id}",
        )
    for name in [n for n, e in backend.exports.items() if e.exporting_stack_id == stack.stack_id]:
        backend.exports.pop(name)
    for export in new_exports:
        backend.exports[export.name] = export


def _rollback_create(backend: Any, stack: Any, exc: Exception) -> None:
    failed = [e.logical_resource_id for e in stack.events if e.resource_status == "CREATE_FAILED"]
    reason = (
        f"The following resource(s) failed to create: [{', '.join(failed)}]. Rollback requested by user."
        if failed
        else _failure_reason(exc)
    )
    stack.status = "ROLLBACK_IN_PROGRESS"
    stack._add_stack_event("ROLLBACK_IN_PROGRESS", resource_status_reason=reason)
    try:
        stack.resource_map.delete()
    except Exception:  # best effort, like a rollback that leaves DELETE_FAILED resources
        log.exception("rollback of %s left resources behind", stack.name)
    for name in [n for n, e in backend.exports.items() if e.exporting_stack_id == stack.stack_id]:
        backend.exports.pop(name)
    # moto's resource and output maps are lazy: reading them later (list-stack-resources, describe-stacks) would
    # create the resources again. A rolled-back stack has none.
    stack.resource_map._resource_json_map = {}
    stack.output_map._output_json_map = {}
    stack.status = "ROLLBACK_COMPLETE"
    stack._add_stack_event("ROLLBACK_COMPLETE")


def _patch_backend() -> None:
    backend_cls = cfn_models.CloudFormationBackend
    orig_create_stack = backend_cls.create_stack
    orig_update_stack = backend_cls.update_stack
    orig_execute = backend_cls.execute_change_set

    def create_stack(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        known = set(self.stacks)
        try:
            return orig_create_stack(self, name, *args, **kwargs)
        except Exception as exc:
            new = [s for sid, s in self.stacks.items() if sid not in known and s.name == name]
            if not new:
                raise  # failed validation before the stack existed: the caller gets the error, as on AWS
            # On AWS the API call succeeds and the stack rolls back; wait stack-create-complete then fails.
            _rollback_create(self, new[0], exc)
            return new[0]

    def update_stack(
        self: Any, name: str, template: str, role_arn: str | None, parameters: Any, tags: Any
    ) -> Any:
        stack = self.get_stack(name)
        resolved = self._resolve_update_parameters(instance=stack, incoming_params=parameters)
        if (
            stack.parse_template(template) == stack.template_dict
            and {k: str(v) for k, v in resolved.items()}
            == {k: str(v) for k, v in (stack.parameters or {}).items()}
            and (tags is None or tags == stack.tags)
        ):
            # moto only detects this when parameters are passed; AWS always does.
            raise ValidationError(stack.name, message="No updates are to be performed.")
        try:
            stack = orig_update_stack(self, name, template, role_arn, parameters, tags)
            _refresh_exports(self, stack)
        except Exception as exc:
            _fail_update(stack, exc)
        return stack

    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        change_set = self.describe_change_set(change_set_name) if change_set_name else None
        if change_set is None:
            return orig_execute(self, change_set_name, stack_name)
        stack = self.stacks[change_set.stack_id]
        # moto creates the review stack without the backend's exports, so Fn::ImportValue failed in change-set
        # deploys; share the live exports dict, as create_stack does.
        stack.cross_stack_resources = self.exports
        stack.resource_map.cross_stack_resources = self.exports
        if change_set.change_set_type == "CREATE":
            # Give the (template-less) review stack its template and parameters before resources are created, so
            # that outputs, exports and describe-stacks Parameters come out as after create-stack.
            stack.template = change_set.template
            stack.parameters = change_set.parameters
            stack._parse_template()
        try:
            orig_execute(self, change_set_name, stack_name)
            if change_set.parameters:
                stack.parameters = change_set.parameters
            _refresh_exports(self, stack)
        except Exception as exc:
            change_set.execution_status = "EXECUTE_FAILED"
            if change_set.change_set_type == "CREATE":
                _rollback_create(self, stack, exc)
            else:
                _fail_update(stack, exc)

    backend_cls.create_stack = create_stack
    backend_cls.update_stack = update_stack
    backend_cls.execute_change_set = execute_change_set

    # CreateChangeSet must not refuse an unchanged template: AWS creates the change set and marks it FAILED with
    # "The submitted information didn't contain changes." (moto's backend already does that), which is what
    # `aws cloudformation deploy` turns into "No changes to deploy". moto's response layer raises instead.
    orig_validate = cfn_responses.CloudFormationResponse._validate_different_update

    def _validate_different_update(self: Any, incoming_params: Any, stack_body: str, old_stack: Any) -> None:
        if self._get_action() == "CreateChangeSet":
            return
        orig_validate(self, incoming_params, stack_body, old_stack)

    cfn_responses.CloudFormationResponse._validate_different_update = _validate_different_update


def _fail_update(stack: Any, exc: Exception) -> None:
    failed = [e.logical_resource_id for e in stack.events if e.resource_status == "UPDATE_FAILED"]
    reason = (
        f"The following resource(s) failed to update: [{', '.join(failed)}]. "
        if failed
        else _failure_reason(exc)
    )
    # The local cloud cannot restore the previous properties of resources already updated; it records the AWS
    # terminal state so that `wait stack-update-complete` fails as it would on AWS.
    stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", resource_status_reason=reason)
    stack.status = "UPDATE_ROLLBACK_COMPLETE"
    stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE")
