"""CloudFormation in the local cloud: the resource types moto skips, updates/deletes it gets wrong, change-set outputs.

moto 5.2.5 builds its type registry from the *direct* subclasses of ``CloudFormationModel``
(``moto.cloudformation.parsing.get_model_list``). Types it has no model for are skipped with a warning, so a stack
"succeeds" without its alarms, subscriptions or policies. This module:

* adds models for ``AWS::CloudWatch::Alarm``, ``AWS::CloudWatch::CompositeAlarm``, ``AWS::SNS::Subscription``,
  ``AWS::SNS::TopicPolicy``, ``AWS::SQS::QueuePolicy``, ``AWS::Events::EventBusPolicy``, ``AWS::S3::BucketPolicy``, ``AWS::Logs::MetricFilter``,
  ``AWS::Scheduler::Schedule`` and replaces moto's ``AWS::Lambda::Permission`` (which has no physical id, update or
  delete);
* makes an unsupported type fail the stack (``CREATE_FAILED`` + rollback) instead of being silently skipped;
* gives every type an update: an in-place updater where AWS updates in place (KMS key, DynamoDB table, log group,
  managed policy), otherwise delete-then-create (moto stores ``None`` for types without an update, losing them);
* gives delete to the types moto forgets (managed policy);
* records per-resource stack events, with ``ResourceStatusReason`` on failure, and rolls back a failed create;
* makes ``ExecuteChangeSet`` (what ``aws cloudformation deploy`` uses) record outputs and exports, as create/update
  stack do, and makes ``UpdateStack`` refresh exports and answer "No updates are to be performed." like AWS.

Patches (see ``MOTO_TOUCHPOINTS`` here and in each submodule): ``moto.cloudformation.parsing`` (resource
create/update/delete, the model registry), ``moto.cloudformation.models.CloudFormationBackend`` (stack lifecycle),
``moto.cloudformation.responses.CloudFormationResponse`` (capabilities, ValidateTemplate) and the CloudFormation
models of ``moto.events`` / ``moto.stepfunctions``. AWS behaviour:
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-template-resource-type-ref.html and
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks-update-behaviors.html

Modules: ``models`` (new resource types), ``updaters`` (in-place updates, post-create fixes, deletes), ``events``
(stack events), ``patch_parsing`` / ``patch_backend`` / ``patch_responses`` / ``patch_models`` (the patches).
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation import parsing

from ._shared import _PREVIOUS_JSON, _policy_json, _props, log
from .events import _add_resource_event, _failure_reason, _physical_id, _stack_for
from .models import (
    CloudWatchAlarmResource,
    CompositeAlarmResource,
    EventBusPolicyResource,
    LambdaPermissionResource,
    LogsMetricFilterResource,
    S3BucketPolicyResource,
    SchedulerScheduleResource,
    SnsSubscriptionResource,
    SnsTopicPolicyResource,
    SqsQueuePolicyResource,
)
from .patch_backend import _fail_update, _patch_backend, _refresh_exports, _rollback_create
from .patch_models import _patch_event_bus_physical_id, _patch_state_machine
from .patch_parsing import _patch_parsing
from .patch_responses import InsufficientCapabilities, _patch_responses, _template_dict, required_capabilities
from .updaters import DELETERS, POST_CREATE, UPDATERS, Updater

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.cloudformation.parsing.get_model_list.cache_clear()",
    "moto.cloudformation.parsing.get_model_map.cache_clear()",
    "moto.cloudformation.parsing.get_name_type_map.cache_clear()",
)

_installed = False


def _refresh_model_registry() -> None:
    # The registry is lru_cached at first use; our subclasses must be visible (and override moto's Permission).
    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()


def install(ctx: Any = None) -> None:
    global _installed
    if _installed:
        return
    _installed = True
    _patch_parsing()
    _patch_event_bus_physical_id()
    _patch_backend()
    _patch_responses()
    _patch_state_machine()
    _refresh_model_registry()


__all__ = [
    "DELETERS",
    "POST_CREATE",
    "UPDATERS",
    "_PREVIOUS_JSON",
    "CloudWatchAlarmResource",
    "CompositeAlarmResource",
    "EventBusPolicyResource",
    "InsufficientCapabilities",
    "LambdaPermissionResource",
    "LogsMetricFilterResource",
    "S3BucketPolicyResource",
    "SchedulerScheduleResource",
    "SnsSubscriptionResource",
    "SnsTopicPolicyResource",
    "SqsQueuePolicyResource",
    "Updater",
    "_add_resource_event",
    "_fail_update",
    "_failure_reason",
    "_patch_backend",
    "_patch_event_bus_physical_id",
    "_patch_parsing",
    "_patch_responses",
    "_patch_state_machine",
    "_physical_id",
    "_policy_json",
    "_props",
    "_refresh_exports",
    "_rollback_create",
    "_stack_for",
    "_template_dict",
    "install",
    "log",
    "required_capabilities",
]
