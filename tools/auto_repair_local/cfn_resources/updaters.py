"""In-place updates, post-create fixes and deletes for moto models that lack or get them wrong.

What AWS updates in place and what it replaces:
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-updating-stacks-update-behaviors.html
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from moto.cloudformation import parsing
from moto.utilities.utils import get_partition

from auto_repair_local.sts_trust import invalid_trust_principal

from ._shared import _policy_json, _props

# What this module relies on in moto: checked at server start and by tests/unit/test_local_cloud_contracts.py
# (auto_repair_local.moto_contract; upgrade procedure in docs/ARCHITECTURE.md, "Upgrading moto").
MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.iam.exceptions.MalformedPolicyDocument",
    "moto.cloudformation.parsing.get_model_map()",
    "moto.kms.models.kms_backends",
    "moto.kms.models.KmsBackend.enable_key_rotation(key_id)",
    "moto.kms.models.KmsBackend.disable_key_rotation(key_id)",
    "moto.kms.models.KmsBackend.enable_key(key_id)",
    "moto.kms.models.KmsBackend.disable_key(key_id)",
    "moto.kms.models.Key#id",
    "moto.kms.models.Key#description",
    "moto.kms.models.Key#policy",
    "moto.dynamodb.models.dynamodb_backends",
    "moto.dynamodb.models.DynamoDBBackend.update_time_to_live(table_name, ttl_spec)",
    "moto.dynamodb.models.DynamoDBBackend.update_continuous_backups(table_name, point_in_time_spec)",
    "moto.dynamodb.models.DynamoDBBackend.update_table(name, attr_definitions, global_index, throughput, billing_mode, stream_spec, deletion_protection_enabled, warm_throughput)",
    "moto.dynamodb.models.table.Table#name",
    "moto.dynamodb.models.table.Table#schema",
    "moto.dynamodb.models.table.Table#global_indexes",
    "moto.dynamodb.models.table.Table#sse_specification",
    "moto.logs.models.logs_backends",
    "moto.logs.models.LogsBackend.put_retention_policy(log_group_name, retention_in_days)",
    "moto.logs.models.LogsBackend.delete_retention_policy(log_group_name)",
    "moto.logs.models.LogGroup#name",
    "moto.logs.models.LogGroup#kms_key_id",
    "moto.utilities.utils.get_partition(region)",
    "moto.iam.models.iam_backends",
    "moto.iam.models.IAMBackend.attach_role_policy(policy_arn, role_name)",
    "moto.iam.models.IAMBackend.detach_role_policy(policy_arn, role_name)",
    "moto.iam.models.IAMBackend.attach_user_policy(policy_arn, user_name)",
    "moto.iam.models.IAMBackend.detach_user_policy(policy_arn, user_name)",
    "moto.iam.models.IAMBackend.attach_group_policy(policy_arn, group_name)",
    "moto.iam.models.IAMBackend.detach_group_policy(policy_arn, group_name)",
    "moto.iam.models.IAMBackend.create_policy_version(policy_arn, policy_document, set_as_default)",
    "moto.iam.models.IAMBackend.delete_policy_version(policy_arn, version_id)",
    "moto.iam.models.IAMBackend.delete_policy(policy_arn)",
    "moto.iam.models.IAMBackend.delete_role(role_name)",
    "moto.iam.models.IAMBackend#roles",
    "moto.iam.models.IAMBackend#users",
    "moto.iam.models.IAMBackend#groups",
    "moto.iam.models.IAMBackend#managed_policies",
    "moto.iam.models.IAMBackend#instance_profiles",
    "moto.iam.models.ManagedPolicy#arn",
    "moto.iam.models.ManagedPolicy#name",
    "moto.iam.models.ManagedPolicy#versions",
    "moto.iam.models.ManagedPolicy#default_version_id",
    "moto.iam.models.PolicyVersion#document",
    "moto.iam.models.PolicyVersion#version_id",
    "moto.iam.models.PolicyVersion#is_default",
    "moto.iam.models.AWSManagedPolicy.from_data(name, account_id, region_name, data)",
    "moto.iam.aws_managed_policies.aws_managed_policies_data",
    "moto.iam.models.Role.put_policy(policy_name, policy_json)",
    "moto.iam.models.Role.delete_policy(policy_name)",
    "moto.iam.models.Role#policies",
    "moto.iam.models.Role#managed_policies",
    "moto.iam.models.Role#assume_role_policy_document",
    "moto.iam.models.Role#description",
    "moto.iam.models.Role#max_session_duration",
    "moto.iam.models.InstanceProfile#roles",
    "moto.awslambda.utils.get_backend(account_id, region)",
    "moto.awslambda.models.LambdaFunction._create_zipfile_from_plaintext_code(code)",
    "moto.awslambda.models.LambdaFunction#function_name",
    "moto.awslambda.models.LambdaBackend.update_function_configuration(function_name, qualifier, body)",
    "moto.awslambda.models.LambdaBackend.update_function_code(function_name, qualifier, body)",
)

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
    trust = _policy_json(p["AssumeRolePolicyDocument"])
    problem = invalid_trust_principal(trust)  # IAM refuses an unknown role/user principal on update too
    if problem:
        from moto.iam.exceptions import MalformedPolicyDocument

        raise MalformedPolicyDocument(problem)
    original.assume_role_policy_document = trust
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
