"""CloudFormation resource models for the types moto 5.2.5 skips (and a replacement Lambda permission).

moto's registry sees only *direct* subclasses of ``moto.core.common_models.CloudFormationModel``
(``moto.cloudformation.parsing.get_model_list``). AWS behaviour: the resource type pages under
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-template-resource-type-ref.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import json
from typing import Any

from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.core.common_models import CloudFormationModel
from moto.utilities.utils import get_partition

from ._shared import _policy_json, _props, log

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.core.common_models.CloudFormationModel.create_from_cloudformation_json(resource_name, cloudformation_json, account_id, region_name)",
    "moto.core.common_models.CloudFormationModel.update_from_cloudformation_json(original_resource, new_resource_name, cloudformation_json, account_id, region_name)",
    "moto.core.common_models.CloudFormationModel.delete_from_cloudformation_json(resource_name, cloudformation_json, account_id, region_name)",
    "moto.core.common_models.CloudFormationModel.cloudformation_type()",
    "moto.core.common_models.CloudFormationModel.cloudformation_name_type()",
    "moto.core.common_models.CloudFormationModel.has_cfn_attr(attr)",
    "moto.cloudformation.parsing.get_model_list()",
    "moto.cloudformation.exceptions.UnformattedGetAttTemplateException()",
    "moto.utilities.utils.get_partition(region)",
    "moto.cloudwatch.models.cloudwatch_backends",
    "moto.cloudwatch.models.CloudWatchBackend.put_metric_alarm(name, namespace, metric_name, metric_data_queries, comparison_operator, evaluation_periods, datapoints_to_alarm, period, threshold, statistic, extended_statistic, description, dimensions, alarm_actions, ok_actions, insufficient_data_actions, unit, actions_enabled, treat_missing_data, evaluate_low_sample_count_percentile, threshold_metric_id, rule, tags)",
    "moto.cloudwatch.models.CloudWatchBackend.delete_alarms(alarm_names)",
    "moto.cloudwatch.models.Alarm#alarm_arn",
    "moto.cloudwatch.models.Dimension(name, value)",
    "moto.cloudwatch.models.Metric(metric_name, namespace, dimensions)",
    "moto.cloudwatch.models.MetricStat(metric, period, stat, unit)",
    "moto.cloudwatch.models.MetricDataQuery(query_id, label, period, return_data, expression, metric_stat)",
    "moto.sns.models.sns_backends",
    "moto.sns.models.SNSBackend.subscribe(topic_arn, endpoint, protocol)",
    "moto.sns.models.SNSBackend.set_subscription_attributes(arn, name, value)",
    "moto.sns.models.SNSBackend.unsubscribe(subscription_arn)",
    "moto.sns.models.SNSBackend.get_topic(arn)",
    "moto.sns.models.SNSBackend#subscriptions",
    "moto.sns.models.SNSBackend#topics",
    "moto.sns.models.Subscription#arn",
    "moto.sns.models.Subscription#topic_arn",
    "moto.sns.models.Subscription#protocol",
    "moto.sns.models.Subscription#endpoint",
    "moto.sns.models.Subscription#attributes",
    "moto.sns.models.Topic#policy",
    "moto.sns.models.Topic#_policy_json",
    "moto.sns.models.Topic._create_default_topic_policy(region_name, account_id, name)",
    "moto.sqs.models.sqs_backends",
    "moto.sqs.models.SQSBackend.set_queue_attributes(queue_name, attributes)",
    "moto.sqs.models.SQSBackend#queues",
    "moto.s3.models.s3_backends",
    "moto.s3.models.S3Backend.put_bucket_policy(bucket_name, policy)",
    "moto.s3.models.S3Backend.delete_bucket_policy(bucket_name)",
    "moto.s3.models.S3Backend#buckets",
    "moto.logs.models.logs_backends",
    "moto.logs.models.LogsBackend.put_metric_filter(filter_name, filter_pattern, log_group_name, metric_transformations)",
    "moto.logs.models.LogsBackend.delete_metric_filter(filter_name, log_group_name)",
    "moto.scheduler.models.scheduler_backends",
    "moto.scheduler.models.EventBridgeSchedulerBackend.create_schedule(description, end_date, flexible_time_window, group_name, kms_key_arn, name, schedule_expression, schedule_expression_timezone, start_date, state, target, action_after_completion)",
    "moto.scheduler.models.EventBridgeSchedulerBackend.delete_schedule(group_name, name)",
    "moto.scheduler.models.Schedule#arn",
    "moto.awslambda.utils.get_backend(account_id, region)",
    "moto.awslambda.models.LambdaBackend.add_permission(function_name, qualifier, raw)",
    "moto.awslambda.models.LambdaBackend.remove_permission(function_name, sid)",
    "moto.events.models.events_backends",
    "moto.events.models.EventsBackend.describe_event_bus(name)",
    "moto.events.models.EventsBackend.put_permission(event_bus_name, action, principal, statement_id, condition, policy)",
    "moto.events.models.EventsBackend.remove_permission(event_bus_name, statement_id, remove_all_permissions)",
    "moto.events.models.EventBus#policy",
    "moto.events.models.EventBus#arn",
    "moto.events.models.EventBus.remove_statements()",
)

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


class EventBusPolicyResource(_Base, CloudFormationModel):
    """``AWS::Events::EventBusPolicy``: one statement of an event bus's resource policy, kept by EventBridge
    PutPermission/RemovePermission (the bus policy the cross-account delivery evaluates, events_delivery.bus_allows).

    AWS: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-events-eventbuspolicy.html
    (``Statement``, or the older ``Action``/``Principal``/``Condition`` {Type, Key, Value}; ``StatementId`` names
    the statement; other statements of the bus policy are left alone) and
    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutPermission.html.
    """

    def __init__(self, account_id: str, region_name: str, bus_name: str, statement_id: str) -> None:
        self.account_id, self.region_name, self.bus_name, self.physical_id = (
            account_id,
            region_name,
            bus_name,
            statement_id,
        )

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Events::EventBusPolicy"

    @staticmethod
    def _bus_name(value: str | None) -> str:
        # EventBusName takes a name or an ARN; absent means the account's default bus.
        return (value or "default").rsplit("event-bus/", 1)[-1]

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> EventBusPolicyResource:
        from moto.events.models import events_backends

        p = _props(cloudformation_json)
        backend = events_backends[account_id][region_name]
        bus_name, sid = cls._bus_name(p.get("EventBusName")), p["StatementId"]
        bus = backend.describe_event_bus(bus_name)
        if "Statement" in p:
            statement = dict(p["Statement"])
            statement["Sid"] = sid
            statement.setdefault("Resource", bus.arn)
            # PutPermission with Policy replaces the whole policy (and moto's drops statements sharing a
            # principal): rebuild it from the bus's other statements plus this one.
            others = [s for s in json.loads(bus.policy or '{"Statement": []}')["Statement"] if s.get("Sid") != sid]
            bus.remove_statements()
            backend.put_permission(
                bus_name, None, None, sid, None,  # type: ignore[arg-type]
                json.dumps({"Version": "2012-10-17", "Statement": [*others, statement]}),
            )
        else:
            backend.put_permission(
                bus_name, p.get("Action"), p.get("Principal"), sid, p.get("Condition"), None  # type: ignore[arg-type]
            )
        return cls(account_id, region_name, bus_name, sid)

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.events.models import events_backends

        try:
            events_backends[account_id][region_name].remove_permission(self.bus_name, self.physical_id, False)
        except Exception:  # the bus (or its policy) may already be gone, deleted earlier in the same stack delete
            log.debug("bus policy statement %s: bus %s already gone", self.physical_id, self.bus_name)
