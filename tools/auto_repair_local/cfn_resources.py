"""CloudFormation in the local cloud: the resource types moto skips, updates/deletes it gets wrong, change-set outputs.

moto 5.2.5 builds its type registry from the *direct* subclasses of ``CloudFormationModel``
(``moto.cloudformation.parsing.get_model_list``). Types it has no model for are skipped with a warning, so a stack
"succeeds" without its alarms, subscriptions or policies. This module:

* adds models for ``AWS::CloudWatch::Alarm``, ``AWS::CloudWatch::CompositeAlarm``, ``AWS::SNS::Subscription``,
  ``AWS::SNS::TopicPolicy``, ``AWS::SQS::QueuePolicy``, ``AWS::S3::BucketPolicy``, ``AWS::Logs::MetricFilter``,
  ``AWS::Scheduler::Schedule`` and replaces moto's ``AWS::Lambda::Permission`` (which has no physical id, update or
  delete);
* makes an unsupported type fail the stack (``CREATE_FAILED`` + rollback) instead of being silently skipped;
* gives every type an update: an in-place updater where AWS updates in place (KMS key, DynamoDB table, log group,
  managed policy), otherwise delete-then-create (moto stores ``None`` for types without an update, losing them);
* gives delete to the types moto forgets (managed policy);
* records per-resource stack events, with ``ResourceStatusReason`` on failure, and rolls back a failed create;
* makes ``ExecuteChangeSet`` (what ``aws cloudformation deploy`` uses) record outputs and exports, as create/update
  stack do, and makes ``UpdateStack`` refresh exports and answer "No updates are to be performed." like AWS.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing
from moto.cloudformation import responses as cfn_responses
from moto.cloudformation.exceptions import (
    CloudFormationError,
    UnformattedGetAttTemplateException,
    ValidationError,
)
from moto.core.common_models import CloudFormationModel
from moto.utilities.utils import get_partition

log = logging.getLogger("auto_repair_local.cfn_resources")

_PREVIOUS_JSON = "_auto_repair_previous_resource_json"


def _props(cloudformation_json: dict[str, Any]) -> dict[str, Any]:
    return cloudformation_json.get("Properties") or {}


def _policy_json(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document)


# ---------------------------------------------------------------------------------------------------------------
# New resource models. Each subclasses CloudFormationModel *directly* so moto's registry sees it.
# ---------------------------------------------------------------------------------------------------------------


class _Base:
    """Defaults shared by the models below (a mixin: CloudFormationModel must stay a direct base)."""

    physical_id: str = ""

    @property
    def physical_resource_id(self) -> str:
        return self.physical_id

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in getattr(cls, "ATTRS", ())

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name in getattr(self, "ATTRS", ()):
            return getattr(self, "attr_" + attribute_name.lower())
        raise UnformattedGetAttTemplateException()

    def is_created(self) -> bool:
        return True

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Any:
        # Replacement semantics: remove the old one, create the new one (physical id may change, as on AWS).
        original_resource.delete(account_id, region_name)
        return cls.create_from_cloudformation_json(  # type: ignore[attr-defined]
            new_resource_name, cloudformation_json, account_id, region_name
        )

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        # Only reached when a resource object is unavailable; our objects all implement delete().
        return None


def _metric_data_queries(metrics: list[dict[str, Any]]) -> list[Any]:
    """CloudFormation ``Metrics`` -> moto's MetricDataQuery objects, exactly as moto's PutMetricAlarm response does."""
    from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat

    queries = []
    for metric in metrics:
        stat = metric.get("MetricStat") or {}
        metric_stat = None
        if stat.get("Metric", {}).get("MetricName"):
            dims = [Dimension(d.get("Name"), d.get("Value")) for d in stat["Metric"].get("Dimensions", [])]
            metric_stat = MetricStat(
                metric=Metric(stat["Metric"]["MetricName"], stat["Metric"].get("Namespace"), dims),
                period=stat.get("Period"),
                stat=stat.get("Stat"),
                unit=stat.get("Unit"),
            )
        return_data = metric.get("ReturnData")
        queries.append(
            MetricDataQuery(
                query_id=metric.get("Id"),
                label=metric.get("Label"),
                period=metric.get("Period"),
                # CloudFormation gives booleans; the query API (and moto's serializer) uses the string form.
                return_data=None if return_data is None else str(return_data).lower(),
                expression=metric.get("Expression"),
                metric_stat=metric_stat,
            )
        )
    return queries


def _attribute_text(value: Any) -> str:
    # CloudFormation gives objects and booleans; SNS attributes are strings (JSON text, "true"/"false").
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


class CloudWatchAlarmResource(_Base, CloudFormationModel):
    ATTRS = ("Arn",)

    def __init__(self, account_id: str, region_name: str, name: str, arn: str) -> None:
        self.account_id, self.region_name, self.physical_id, self.attr_arn = (
            account_id,
            region_name,
            name,
            arn,
        )

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CloudWatchAlarmResource:
        from moto.cloudwatch.models import cloudwatch_backends

        p = _props(cloudformation_json)
        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=resource_name,
            namespace=p.get("Namespace"),
            metric_name=p.get("MetricName"),
            metric_data_queries=_metric_data_queries(p["Metrics"]) if p.get("Metrics") else None,
            comparison_operator=p.get("ComparisonOperator"),
            evaluation_periods=int(p["EvaluationPeriods"]),
            datapoints_to_alarm=_opt_int(p.get("DatapointsToAlarm")),
            period=_opt_int(p.get("Period")),  # type: ignore[arg-type]
            threshold=float(p["Threshold"]) if p.get("Threshold") is not None else None,  # type: ignore[arg-type]
            statistic=p.get("Statistic"),
            extended_statistic=p.get("ExtendedStatistic"),
            description=p.get("AlarmDescription"),
            dimensions=p.get("Dimensions", []),
            alarm_actions=p.get("AlarmActions", []),
            ok_actions=p.get("OKActions", []),
            insufficient_data_actions=p.get("InsufficientDataActions", []),
            unit=p.get("Unit"),
            actions_enabled=str(p.get("ActionsEnabled", True)).lower() != "false",
            treat_missing_data=p.get("TreatMissingData"),
            evaluate_low_sample_count_percentile=p.get("EvaluateLowSampleCountPercentile"),
            threshold_metric_id=p.get("ThresholdMetricId"),
            tags=p.get("Tags"),
        )
        return cls(account_id, region_name, resource_name, alarm.alarm_arn)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> CloudWatchAlarmResource:
        # Same name: PutMetricAlarm overwrites in place (the alarms extension keeps its state, as AWS does).
        if new_resource_name != original_resource.physical_id:
            original_resource.delete(account_id, region_name)
        return cls.create_from_cloudformation_json(
            new_resource_name, cloudformation_json, account_id, region_name
        )

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.cloudwatch.models import cloudwatch_backends

        cloudwatch_backends[account_id][region_name].delete_alarms([self.physical_id])


class CompositeAlarmResource(CloudWatchAlarmResource, CloudFormationModel):
    # CloudFormationModel listed again so that this class is a *direct* subclass (moto's registry needs that).
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::CompositeAlarm"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CompositeAlarmResource:
        from moto.cloudwatch.models import cloudwatch_backends

        p = _props(cloudformation_json)
        # moto stores composite alarms as metric alarms with a rule (that is what its PutCompositeAlarm does).
        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=resource_name,
            namespace=None,  # type: ignore[arg-type]
            metric_name=None,  # type: ignore[arg-type]
            comparison_operator=None,  # type: ignore[arg-type]
            evaluation_periods=None,  # type: ignore[arg-type]
            period=None,  # type: ignore[arg-type]
            threshold=None,  # type: ignore[arg-type]
            statistic=None,  # type: ignore[arg-type]
            description=p.get("AlarmDescription"),
            dimensions=[],
            alarm_actions=p.get("AlarmActions", []),
            ok_actions=p.get("OKActions", []),
            insufficient_data_actions=p.get("InsufficientDataActions", []),
            actions_enabled=str(p.get("ActionsEnabled", True)).lower() != "false",
            rule=p.get("AlarmRule"),
        )
        return cls(account_id, region_name, resource_name, alarm.alarm_arn)


class SnsSubscriptionResource(_Base, CloudFormationModel):
    ATTRS = ()

    def __init__(self, account_id: str, region_name: str, arn: str) -> None:
        self.account_id, self.region_name, self.physical_id = account_id, region_name, arn

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::Subscription"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SnsSubscriptionResource:
        from moto.sns.models import sns_backends

        p = _props(cloudformation_json)
        topic_arn = p["TopicArn"]
        region = topic_arn.split(":")[3] if topic_arn.startswith("arn:") else region_name
        backend = sns_backends[account_id][region]
        subscription = backend.subscribe(topic_arn, p.get("Endpoint"), p["Protocol"])
        for key in cls._ATTRIBUTES:
            if p.get(key) is not None:
                backend.set_subscription_attributes(subscription.arn, key, _attribute_text(p[key]))
        return cls(account_id, region, subscription.arn)

    # FilterPolicyScope first: moto builds the filter matcher with the scope current when FilterPolicy is set.
    _ATTRIBUTES = (
        "FilterPolicyScope",
        "FilterPolicy",
        "RawMessageDelivery",
        "RedrivePolicy",
        "DeliveryPolicy",
    )

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> SnsSubscriptionResource:
        from moto.sns.models import sns_backends

        p = _props(cloudformation_json)
        backend = sns_backends[account_id][original_resource.region_name]
        current = backend.subscriptions.get(original_resource.physical_id)
        if current is None or (current.topic_arn, current.protocol, current.endpoint) != (
            p["TopicArn"],
            p["Protocol"],
            p.get("Endpoint"),
        ):
            # TopicArn, Protocol and Endpoint are replacement properties on AWS.
            original_resource.delete(account_id, region_name)
            return cls.create_from_cloudformation_json(
                new_resource_name, cloudformation_json, account_id, region_name
            )
        for key in cls._ATTRIBUTES:
            if p.get(key) is not None:
                backend.set_subscription_attributes(current.arn, key, _attribute_text(p[key]))
            elif key == "FilterPolicy" and current.attributes.get(key):
                # Removing the property removes the filter (moto treats "" as "no filter policy").
                backend.set_subscription_attributes(current.arn, key, "")
        return original_resource

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.sns.models import sns_backends

        sns_backends[account_id][self.region_name].unsubscribe(self.physical_id)


class SnsTopicPolicyResource(_Base, CloudFormationModel):
    def __init__(self, account_id: str, region_name: str, name: str, topics: list[str]) -> None:
        self.account_id, self.region_name, self.physical_id, self.topics = (
            account_id,
            region_name,
            name,
            topics,
        )

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::TopicPolicy"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SnsTopicPolicyResource:
        from moto.sns.models import sns_backends

        p = _props(cloudformation_json)
        policy = _policy_json(p["PolicyDocument"])
        for topic_arn in p["Topics"]:
            # The backend's set_topic_attribute would setattr("Policy"); the model's setter is `policy`.
            sns_backends[account_id][topic_arn.split(":")[3]].get_topic(topic_arn).policy = policy
        return cls(account_id, region_name, resource_name, list(p["Topics"]))

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.sns.models import sns_backends

        for topic_arn in self.topics:
            backend = sns_backends[account_id][topic_arn.split(":")[3]]
            topic = backend.topics.get(topic_arn)
            if topic is not None:
                # AWS restores the topic's default policy when the TopicPolicy resource goes away.
                topic._policy_json = topic._create_default_topic_policy(
                    topic.region, topic.account_id, topic.name
                )


class SqsQueuePolicyResource(_Base, CloudFormationModel):
    def __init__(self, account_id: str, region_name: str, name: str, queues: list[str]) -> None:
        self.account_id, self.region_name, self.physical_id, self.queues = (
            account_id,
            region_name,
            name,
            queues,
        )

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SQS::QueuePolicy"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SqsQueuePolicyResource:
        from moto.sqs.models import sqs_backends

        p = _props(cloudformation_json)
        policy = _policy_json(p["PolicyDocument"])
        for queue_url in p["Queues"]:
            sqs_backends[account_id][region_name].set_queue_attributes(
                queue_url.rstrip("/").split("/")[-1], {"Policy": policy}
            )
        return cls(account_id, region_name, resource_name, list(p["Queues"]))

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.sqs.models import sqs_backends

        backend = sqs_backends[account_id][region_name]
        for queue_url in self.queues:
            name = queue_url.rstrip("/").split("/")[-1]
            if name in backend.queues:
                backend.set_queue_attributes(name, {"Policy": ""})


class S3BucketPolicyResource(_Base, CloudFormationModel):
    def __init__(self, account_id: str, region_name: str, bucket: str) -> None:
        self.account_id, self.region_name, self.physical_id = account_id, region_name, bucket

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> S3BucketPolicyResource:
        from moto.s3.models import s3_backends

        p = _props(cloudformation_json)
        backend = s3_backends[account_id][get_partition(region_name)]
        backend.put_bucket_policy(p["Bucket"], _policy_json(p["PolicyDocument"]).encode())
        # On AWS the physical id (and Ref) of a bucket policy is the bucket name.
        return cls(account_id, region_name, p["Bucket"])

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> S3BucketPolicyResource:
        if _props(cloudformation_json).get("Bucket") != original_resource.physical_id:
            original_resource.delete(account_id, region_name)
        return cls.create_from_cloudformation_json(
            new_resource_name, cloudformation_json, account_id, region_name
        )

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.s3.models import s3_backends

        backend = s3_backends[account_id][get_partition(region_name)]
        if self.physical_id in backend.buckets:
            backend.delete_bucket_policy(self.physical_id)


class LogsMetricFilterResource(_Base, CloudFormationModel):
    def __init__(self, account_id: str, region_name: str, name: str, log_group: str) -> None:
        self.account_id, self.region_name, self.physical_id, self.log_group = (
            account_id,
            region_name,
            name,
            log_group,
        )

    @staticmethod
    def cloudformation_name_type() -> str:
        return "FilterName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Logs::MetricFilter"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> LogsMetricFilterResource:
        from moto.logs.models import logs_backends

        p = _props(cloudformation_json)
        # moto stores the API's camelCase shape (metricName, ...); CloudFormation uses PascalCase.
        transformations = [
            {k[0].lower() + k[1:]: (str(v) if k == "MetricValue" else v) for k, v in t.items()}
            for t in p.get("MetricTransformations", [])
        ]
        logs_backends[account_id][region_name].put_metric_filter(
            filter_name=resource_name,
            filter_pattern=p.get("FilterPattern", ""),
            log_group_name=p["LogGroupName"],
            metric_transformations=transformations,  # type: ignore[arg-type]
        )
        return cls(account_id, region_name, resource_name, p["LogGroupName"])

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> LogsMetricFilterResource:
        # PutMetricFilter overwrites a filter of the same name; only a rename/regroup needs the old one removed.
        if (new_resource_name, _props(cloudformation_json).get("LogGroupName")) != (
            original_resource.physical_id,
            original_resource.log_group,
        ):
            original_resource.delete(account_id, region_name)
        return cls.create_from_cloudformation_json(
            new_resource_name, cloudformation_json, account_id, region_name
        )

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.logs.models import logs_backends

        logs_backends[account_id][region_name].delete_metric_filter(self.physical_id, self.log_group)


class SchedulerScheduleResource(_Base, CloudFormationModel):
    ATTRS = ("Arn",)

    def __init__(self, account_id: str, region_name: str, name: str, group: str | None, arn: str) -> None:
        self.account_id, self.region_name, self.physical_id = account_id, region_name, name
        self.group, self.attr_arn = group, arn

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Scheduler::Schedule"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SchedulerScheduleResource:
        from moto.scheduler.models import scheduler_backends

        p = _props(cloudformation_json)
        schedule = scheduler_backends[account_id][region_name].create_schedule(
            description=p.get("Description"),  # type: ignore[arg-type]
            end_date=p.get("EndDate"),  # type: ignore[arg-type]
            flexible_time_window=p.get("FlexibleTimeWindow", {"Mode": "OFF"}),
            group_name=p.get("GroupName"),  # type: ignore[arg-type]
            kms_key_arn=p.get("KmsKeyArn"),  # type: ignore[arg-type]
            name=resource_name,
            schedule_expression=p["ScheduleExpression"],
            schedule_expression_timezone=p.get("ScheduleExpressionTimezone"),  # type: ignore[arg-type]
            start_date=p.get("StartDate"),  # type: ignore[arg-type]
            state=p.get("State", "ENABLED"),
            target=p["Target"],
            action_after_completion=None,
        )
        return cls(account_id, region_name, resource_name, p.get("GroupName"), schedule.arn)

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.scheduler.models import scheduler_backends

        scheduler_backends[account_id][region_name].delete_schedule(self.group, self.physical_id)


class LambdaPermissionResource(_Base, CloudFormationModel):
    """Replaces moto's model, which adds a statement without a Sid and can neither update nor delete it."""

    def __init__(self, account_id: str, region_name: str, sid: str, function_name: str) -> None:
        self.account_id, self.region_name, self.physical_id, self.function_name = (
            account_id,
            region_name,
            sid,
            function_name,
        )

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::Permission"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> LambdaPermissionResource:
        from moto.awslambda.utils import get_backend

        p = dict(_props(cloudformation_json))
        function_name = p["FunctionName"]
        # The generated name is "<stack>-<logical id>-<suffix>", which is also what AWS uses as the statement id.
        statement = {"StatementId": resource_name, **{k: v for k, v in p.items() if k != "FunctionName"}}
        get_backend(account_id, region_name).add_permission(function_name, None, json.dumps(statement))  # type: ignore[arg-type]
        return cls(account_id, region_name, resource_name, function_name)

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.awslambda.utils import get_backend

        try:
            get_backend(account_id, region_name).remove_permission(self.function_name, self.physical_id)
        except Exception:  # the function may already be gone (deleted earlier in the same stack delete)
            log.debug("permission %s: function %s already gone", self.physical_id, self.function_name)


# ---------------------------------------------------------------------------------------------------------------
# In-place updates and deletes for moto models that lack them (keyed by resource type).
# ---------------------------------------------------------------------------------------------------------------

Updater = Callable[[Any, str, dict[str, Any], str, str], Any]


def _update_kms_key(original: Any, _name: str, cfn: dict[str, Any], account_id: str, region_name: str) -> Any:
    from moto.kms.models import kms_backends

    p = _props(cfn)
    backend = kms_backends[account_id][region_name]
    if "Description" in p:
        original.description = p["Description"]
    if "KeyPolicy" in p:
        original.policy = _policy_json(p["KeyPolicy"])
    if "EnableKeyRotation" in p:
        (backend.enable_key_rotation if p["EnableKeyRotation"] else backend.disable_key_rotation)(original.id)
    if "Enabled" in p:
        (backend.enable_key if p["Enabled"] else backend.disable_key)(original.id)
    return original


def _apply_table_extras(table: Any, props: dict[str, Any], account_id: str, region_name: str) -> None:
    """The Table properties moto's CloudFormation model ignores: TTL and point-in-time recovery."""
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[account_id][region_name]
    if props.get("TimeToLiveSpecification"):
        ttl = props["TimeToLiveSpecification"]
        enabled = str(ttl.get("Enabled", False)).lower() == "true"
        backend.update_time_to_live(
            table.name, {"AttributeName": ttl.get("AttributeName"), "Enabled": enabled}
        )
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr is not None:
        enabled = str(pitr.get("PointInTimeRecoveryEnabled", False)).lower() == "true"
        backend.update_continuous_backups(table.name, {"PointInTimeRecoveryEnabled": enabled})


def _update_table(original: Any, name: str, cfn: dict[str, Any], account_id: str, region_name: str) -> Any:
    from moto.dynamodb.models import dynamodb_backends

    p = _props(cfn)
    if name != original.name or p.get("KeySchema") != original.schema:
        # A new name or key schema needs a new table on AWS too (replacement).
        original.delete(account_id, region_name)
        table = parsing.get_model_map()["AWS::DynamoDB::Table"].create_from_cloudformation_json(
            name, cfn, account_id, region_name
        )
        _create_table_extras(table, p, account_id, region_name)
        return table
    backend = dynamodb_backends[account_id][region_name]
    old_gsis = {g.name for g in original.global_indexes}
    new_gsis = {g["IndexName"]: g for g in p.get("GlobalSecondaryIndexes", [])}
    gsi_updates: list[dict[str, Any]] = [{"Delete": {"IndexName": n}} for n in old_gsis - set(new_gsis)]
    gsi_updates += [{"Create": g} for n, g in new_gsis.items() if n not in old_gsis]
    billing = "PAY_PER_REQUEST" if p.get("BillingMode") == "PAY_PER_REQUEST" else "PROVISIONED"
    table = backend.update_table(
        name=original.name,
        attr_definitions=p.get("AttributeDefinitions"),  # type: ignore[arg-type]
        global_index=gsi_updates,
        throughput=p.get("ProvisionedThroughput"),  # type: ignore[arg-type]
        billing_mode=billing,
        stream_spec=p.get("StreamSpecification") or {"StreamEnabled": False},
        deletion_protection_enabled=p.get("DeletionProtectionEnabled", False),
        warm_throughput=None,
    )
    if "SSESpecification" in p:
        table.sse_specification = _table_sse(p)
    _apply_table_extras(table, p, account_id, region_name)
    return table


def _update_log_group(
    original: Any, name: str, cfn: dict[str, Any], account_id: str, region_name: str
) -> Any:
    from moto.logs.models import logs_backends

    p = _props(cfn)
    backend = logs_backends[account_id][region_name]
    if name != original.name:
        original.delete(account_id, region_name)
        return parsing.get_model_map()["AWS::Logs::LogGroup"].create_from_cloudformation_json(
            name, cfn, account_id, region_name
        )
    if p.get("RetentionInDays") is not None:
        backend.put_retention_policy(original.name, int(p["RetentionInDays"]))
    else:
        backend.delete_retention_policy(original.name)
    if "KmsKeyId" in p:
        original.kms_key_id = p["KmsKeyId"]
    return original


def _iam_backend(account_id: str, region_name: str) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[account_id][get_partition(region_name)]


def _sync_policy_attachments(
    policy_arn: str, props: dict[str, Any], old: dict[str, set[str]], iam: Any
) -> None:
    kinds = {
        "Roles": (iam.attach_role_policy, iam.detach_role_policy, "role_name"),
        "Users": (iam.attach_user_policy, iam.detach_user_policy, "user_name"),
        "Groups": (iam.attach_group_policy, iam.detach_group_policy, "group_name"),
    }
    for key, (attach, detach, arg) in kinds.items():
        wanted = set(props.get(key, []))
        for name in old.get(key, set()) - wanted:
            detach(policy_arn=policy_arn, **{arg: name})
        for name in wanted - old.get(key, set()):
            attach(policy_arn=policy_arn, **{arg: name})


def _update_managed_policy(
    original: Any, name: str, cfn: dict[str, Any], account_id: str, region_name: str
) -> Any:
    p = _props(cfn)
    iam = _iam_backend(account_id, region_name)
    if p.get("ManagedPolicyName", original.name) != original.name:
        _delete_managed_policy(original, cfn, account_id, region_name)
        return parsing.get_model_map()["AWS::IAM::ManagedPolicy"].create_from_cloudformation_json(
            name, cfn, account_id, region_name
        )
    document = _policy_json(p.get("PolicyDocument"))
    current = next(v.document for v in original.versions if v.version_id == original.default_version_id)
    if json.loads(document) != json.loads(current):
        # IAM keeps at most 5 versions: drop the oldest non-default one first, as CloudFormation does.
        versions = [v for v in original.versions if not v.is_default_version]
        if len(original.versions) >= 5 and versions:
            iam.delete_policy_version(original.arn, versions[0].version_id)
        iam.create_policy_version(original.arn, document, set_as_default=True)
    old = {
        "Roles": {r.name for r in iam.roles.values() if original.arn in r.managed_policies},
        "Users": {u.name for u in iam.users.values() if original.arn in u.managed_policies},
        "Groups": {g.name for g in iam.groups.values() if original.arn in g.managed_policies},
    }
    _sync_policy_attachments(original.arn, p, old, iam)
    return original


def _delete_managed_policy(policy: Any, _cfn: dict[str, Any], account_id: str, region_name: str) -> None:
    iam = _iam_backend(account_id, region_name)
    if policy.arn not in iam.managed_policies:
        return
    for role in iam.roles.values():
        if policy.arn in role.managed_policies:
            iam.detach_role_policy(policy.arn, role.name)
    for user in iam.users.values():
        if policy.arn in user.managed_policies:
            iam.detach_user_policy(policy.arn, user.name)
    for group in iam.groups.values():
        if policy.arn in group.managed_policies:
            iam.detach_group_policy(policy.arn, group.name)
    for version in [v for v in policy.versions if not v.is_default_version]:
        iam.delete_policy_version(policy.arn, version.version_id)
    iam.delete_policy(policy.arn)


def _table_sse(props: dict[str, Any]) -> dict[str, Any] | None:
    # CloudFormation says SSEEnabled, the API (and moto's Table) says Enabled.
    sse = props.get("SSESpecification")
    if not sse:
        return None
    out = {k: v for k, v in sse.items() if k != "SSEEnabled"}
    out["Enabled"] = str(sse.get("SSEEnabled", False)).lower() == "true"
    return out


def _create_table_extras(table: Any, props: dict[str, Any], account_id: str, region_name: str) -> None:
    sse = _table_sse(props)
    if sse is not None:
        table.sse_specification = sse
    _apply_table_extras(table, props, account_id, region_name)


def _attach_role_managed_policies(
    role: Any, props: dict[str, Any], account_id: str, region_name: str
) -> None:
    """moto ignores ManagedPolicyArns; attach them (loading the AWS managed one on demand)."""
    iam = _iam_backend(account_id, region_name)
    wanted = set(props.get("ManagedPolicyArns", []))
    for arn in set(role.managed_policies) - wanted:
        iam.detach_role_policy(arn, role.name)
    for arn in wanted - set(role.managed_policies):
        _ensure_aws_managed_policy(iam, arn, account_id, region_name)
        iam.attach_role_policy(arn, role.name)


def _ensure_aws_managed_policy(iam: Any, arn: str, account_id: str, region_name: str) -> None:
    # moto only preloads AWS managed policies with MOTO_IAM_LOAD_MANAGED_POLICIES (slow: ~1000 policies); load the
    # one that is referenced, from moto's own copy of the AWS data.
    if arn in iam.managed_policies or not arn.startswith("arn:aws:iam::aws:policy/"):
        return
    from moto.iam.aws_managed_policies import aws_managed_policies_data
    from moto.iam.models import AWSManagedPolicy

    name = arn.rsplit("/", 1)[-1]
    data = json.loads(aws_managed_policies_data).get(name)
    if data is not None:
        policy = AWSManagedPolicy.from_data(name, account_id, region_name, data)
        iam.managed_policies[policy.arn] = policy


def _update_role(original: Any, name: str, cfn: dict[str, Any], account_id: str, region_name: str) -> Any:
    p = _props(cfn)
    if p.get("RoleName", original.name) != original.name:
        # A new role name is a replacement on AWS too.
        _delete_role(original, cfn, account_id, region_name)
        role = parsing.get_model_map()["AWS::IAM::Role"].create_from_cloudformation_json(
            name, cfn, account_id, region_name
        )
        _attach_role_managed_policies(role, p, account_id, region_name)
        return role
    original.assume_role_policy_document = _policy_json(p["AssumeRolePolicyDocument"])
    original.description = p.get("Description", "")
    original.max_session_duration = int(p.get("MaxSessionDuration", 3600))
    wanted = {pol["PolicyName"]: pol["PolicyDocument"] for pol in p.get("Policies", [])}
    for policy_name in set(original.policies) - set(wanted):
        original.delete_policy(policy_name)
    for policy_name, document in wanted.items():
        original.put_policy(policy_name, document)
    _attach_role_managed_policies(original, p, account_id, region_name)
    return original


def _delete_role(role: Any, _cfn: dict[str, Any], account_id: str, region_name: str) -> None:
    iam = _iam_backend(account_id, region_name)
    if role.name not in iam.roles and role.id not in iam.roles:
        return
    for arn in list(role.managed_policies):
        iam.detach_role_policy(arn, role.name)
    for policy_name in list(role.policies):
        role.delete_policy(policy_name)
    for profile in list(iam.instance_profiles.values()):
        if role in getattr(profile, "roles", []):
            profile.roles.remove(role)
    iam.delete_role(role.name)


def _state_machine_props(props: dict[str, Any]) -> None:
    """moto only reads DefinitionString; AWS also takes Definition (an object) and DefinitionSubstitutions."""
    definition = props.get("DefinitionString")
    if definition is None and props.get("Definition") is not None:
        definition = json.dumps(props.pop("Definition"))
    if isinstance(definition, dict):
        definition = json.dumps(definition)
    for key, value in (props.pop("DefinitionSubstitutions", None) or {}).items():
        definition = definition.replace("${" + key + "}", str(value))
    if definition is not None:
        props["DefinitionString"] = definition


def _remember_function_code(fn: Any, props: dict[str, Any], _account_id: str, _region_name: str) -> None:
    fn._auto_repair_cfn_code = json.dumps(props.get("Code"), sort_keys=True)


def _update_function(original: Any, name: str, cfn: dict[str, Any], account_id: str, region_name: str) -> Any:
    """moto's update feeds inline ZipFile source to base64 decoding ("Incorrect padding") and re-uploads unchanged
    code; do what CloudFormation does: configuration in place, code only when the Code property changed."""
    from moto.awslambda.models import LambdaFunction
    from moto.awslambda.utils import get_backend

    p = _props(cfn)
    model = parsing.get_model_map()["AWS::Lambda::Function"]
    if p.get("FunctionName", original.function_name) != original.function_name:
        original.delete(account_id, region_name)
        fn = model.create_from_cloudformation_json(name, cfn, account_id, region_name)
        _remember_function_code(fn, p, account_id, region_name)
        return fn
    backend = get_backend(account_id, region_name)
    config = {k: v for k, v in p.items() if k not in ("Code", "FunctionName", "Tags")}
    config.setdefault("Environment", {"Variables": {}})  # removing Environment clears the variables on AWS
    backend.update_function_configuration(original.function_name, None, config)  # type: ignore[arg-type]
    code = p.get("Code") or {}
    if json.dumps(code, sort_keys=True) != getattr(original, "_auto_repair_cfn_code", None):
        spec = dict(code)
        if "ZipFile" in spec:
            # Inline source: package it exactly as moto's create does (index.py + cfnresponse).
            spec["ZipFile"] = base64.b64encode(
                LambdaFunction._create_zipfile_from_plaintext_code(spec["ZipFile"])
            )
        backend.update_function_code(original.function_name, None, spec)  # type: ignore[arg-type]
    _remember_function_code(original, p, account_id, region_name)
    return original


def _fix_key_policy(key: Any, _props: dict[str, Any], _account_id: str, _region_name: str) -> None:
    # moto stores a CloudFormation KeyPolicy as a dict; its KMS API then fails on json.loads(key.policy).
    if not isinstance(key.policy, str):
        key.policy = json.dumps(key.policy)


POST_CREATE: dict[str, Callable[[Any, dict[str, Any], str, str], None]] = {
    "AWS::DynamoDB::Table": _create_table_extras,
    "AWS::KMS::Key": _fix_key_policy,
    "AWS::IAM::Role": _attach_role_managed_policies,
    "AWS::Lambda::Function": _remember_function_code,
}

UPDATERS: dict[str, Updater] = {
    "AWS::KMS::Key": _update_kms_key,
    "AWS::DynamoDB::Table": _update_table,
    "AWS::Logs::LogGroup": _update_log_group,
    "AWS::IAM::ManagedPolicy": _update_managed_policy,
    "AWS::IAM::Role": _update_role,
    "AWS::Lambda::Function": _update_function,
}
DELETERS: dict[str, Callable[[Any, dict[str, Any], str, str], None]] = {
    "AWS::IAM::ManagedPolicy": _delete_managed_policy,
    "AWS::IAM::Role": _delete_role,
}


# ---------------------------------------------------------------------------------------------------------------
# Stack events
# ---------------------------------------------------------------------------------------------------------------


def _stack_for(resources_map: Any) -> Any:
    account_id, region = resources_map._account_id, resources_map._region_name
    backend = cfn_models.cloudformation_backends[account_id][region]
    return backend.stacks.get(resources_map.stack_id)


def _physical_id(resource: Any) -> str | None:
    if resource is None or isinstance(resource, str):
        return resource
    try:
        return resource.physical_resource_id
    except Exception:  # some moto models raise for attributes they do not track
        return None


def _add_resource_event(
    resources_map: Any,
    logical_id: str,
    resource_type: str,
    status: str,
    physical_id: str | None = None,
    reason: str | None = None,
) -> None:
    stack = _stack_for(resources_map)
    if stack is None:
        return
    event = cfn_models.Event(
        stack_id=stack.stack_id,
        stack_name=stack.name,
        logical_resource_id=logical_id,
        physical_resource_id=physical_id or "",
        resource_type=resource_type,
        resource_status=status,
        resource_status_reason=reason,
        resource_properties=None,
    )
    stack.events.append(event)


def _failure_reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f'Resource handler returned message: "{message}"'


# ---------------------------------------------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------------------------------------------

_installed = False


def _patch_parsing() -> None:
    orig_create = parsing.parse_and_create_resource
    orig_update = parsing.parse_and_update_resource
    orig_delete_resource = parsing.ResourceMap._delete_resource
    orig_map_update = parsing.ResourceMap.update

    def parse_and_create_resource(
        logical_id: str, resource_json: dict[str, Any], resources_map: Any, account_id: str, region_name: str
    ) -> Any:
        resource_type = resource_json["Type"]
        condition = resource_json.get("Condition")
        if condition and not resources_map.lazy_condition_map[condition]:
            return None
        _add_resource_event(resources_map, logical_id, resource_type, "CREATE_IN_PROGRESS")
        try:
            if (
                resource_type not in parsing.NULL_MODELS
                and not resource_type.startswith("Custom::")
                and resource_type not in parsing.get_model_map()
            ):
                # moto would skip it and report success; AWS refuses unknown types. Fail loudly instead.
                raise ValidationError(
                    message=f"Unrecognized resource types: [{resource_type}] (not supported by the local cloud)"
                )
            resource = orig_create(logical_id, resource_json, resources_map, account_id, region_name)
            if resource is not None and resource_type in POST_CREATE:
                cleaned = parsing.clean_json(resource_json, resources_map)
                POST_CREATE[resource_type](resource, _props(cleaned), account_id, region_name)
        except Exception as exc:
            _add_resource_event(
                resources_map, logical_id, resource_type, "CREATE_FAILED", reason=_failure_reason(exc)
            )
            raise
        _add_resource_event(
            resources_map, logical_id, resource_type, "CREATE_COMPLETE", _physical_id(resource)
        )
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
        _add_resource_event(
            resources_map, logical_id, resource_type, "UPDATE_COMPLETE", _physical_id(resource)
        )
        return resource

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
                old_json = getattr(resources_map, _PREVIOUS_JSON, {}).get(logical_id, resource_json)
                resources_map._delete_resource(original, old_json)
            return None
        if original is None:
            # It did not exist (e.g. condition was false before): create it.
            return orig_create(logical_id, resource_json, resources_map, account_id, region_name)
        if resource_type in UPDATERS:
            resource_class, cleaned, new_name = parsing.parse_resource_and_generate_name(
                logical_id, resource_json, resources_map
            )
            if (
                not resource_class.cloudformation_name_type()
                or resource_class.cloudformation_name_type() not in _props(cleaned)
            ):
                new_name = _physical_id(original) or new_name  # keep the generated name on an in-place update
            resource = UPDATERS[resource_type](original, new_name, cleaned, account_id, region_name)
        else:
            resource_class = parsing.resource_class_from_type(resource_type)
            if resource_class is not None and not hasattr(
                resource_class.update_from_cloudformation_json, "__isabstractmethod__"
            ):
                resource = orig_update(logical_id, resource_json, resources_map, account_id, region_name)
            else:
                # moto has no update for this type (and would store None): replace it.
                old_json = getattr(resources_map, _PREVIOUS_JSON, {}).get(logical_id, resource_json)
                resources_map._delete_resource(original, old_json)
                resource = orig_create(logical_id, resource_json, resources_map, account_id, region_name)
        if resource is not None:
            resource.cf_resource_type = resource_type
            resource.logical_resource_id = logical_id
        return resource

    def _delete_resource(self: Any, parsed_resource: Any, resource_json: dict[str, Any]) -> None:
        logical_id = getattr(parsed_resource, "logical_resource_id", None) or "?"
        resource_type = resource_json.get("Type", "")
        physical = _physical_id(parsed_resource)
        _add_resource_event(self, logical_id, resource_type, "DELETE_IN_PROGRESS", physical)
        try:
            if resource_type in DELETERS:
                DELETERS[resource_type](parsed_resource, resource_json, self._account_id, self._region_name)
            else:
                orig_delete_resource(self, parsed_resource, resource_json)
        except Exception as exc:
            _add_resource_event(
                self, logical_id, resource_type, "DELETE_FAILED", physical, _failure_reason(exc)
            )
            raise
        _add_resource_event(self, logical_id, resource_type, "DELETE_COMPLETE", physical)

    def update(self: Any, template: dict[str, Any], parameters: dict[str, Any] | None = None) -> None:
        # Keep the previous resource JSON: a replacement needs the *old* properties to delete the old resource.
        setattr(self, _PREVIOUS_JSON, dict(self._resource_json_map))
        try:
            orig_map_update(self, template, parameters)
        finally:
            setattr(self, _PREVIOUS_JSON, {})
        # moto drops resources whose update returned None; also drop resources whose condition became false.
        for key in [k for k, v in self._parsed_resources.items() if v is None]:
            self._parsed_resources.pop(key)

    parsing.parse_and_create_resource = parse_and_create_resource
    parsing.parse_and_update_resource = parse_and_update_resource
    parsing.ResourceMap._delete_resource = _delete_resource
    parsing.ResourceMap.update = update


def _patch_event_bus_physical_id() -> None:
    from moto.events.models import EventBus

    # moto's EventBus has no physical_resource_id, so Ref gives "" ; on AWS, Ref returns the bus name.
    EventBus.physical_resource_id = property(lambda self: self.name)  # type: ignore[attr-defined]


def _patch_state_machine() -> None:
    from moto.core.config import default_user_config
    from moto.stepfunctions import models as sfn_models

    if default_user_config.get("stepfunctions", {}).get("execute_state_machine"):
        # With the interpreter on, the Step Functions API serves from the parser backend, but moto's CloudFormation
        # model writes to the plain backend: CFN-created state machines were invisible to the API.
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        sfn_models.stepfunctions_backends = stepfunctions_parser_backends  # type: ignore[assignment]
    cls = sfn_models.StateMachine
    orig_create = cls.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    orig_update = cls.update_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(klass: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any) -> Any:
        _state_machine_props(cloudformation_json.setdefault("Properties", {}))
        return orig_create(klass, resource_name, cloudformation_json, *args, **kwargs)

    def update(klass: Any, *args: Any, **kwargs: Any) -> Any:
        # moto calls this with keywords (original_resource=..., cloudformation_json=..., ...).
        cfn = kwargs["cloudformation_json"] if "cloudformation_json" in kwargs else args[2]
        _state_machine_props(cfn.setdefault("Properties", {}))
        return orig_update(klass, *args, **kwargs)

    cls.create_from_cloudformation_json = classmethod(create)  # type: ignore[assignment]
    cls.update_from_cloudformation_json = classmethod(update)  # type: ignore[assignment]


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


def _patch_responses() -> None:
    responses = cfn_responses.CloudFormationResponse
    orig_validate = responses.validate_template

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
