"""CreateFunction and UpdateFunctionConfiguration refuse an execution role that Lambda cannot assume, as AWS does.

moto checks only that the role exists. AWS also needs the role's trust policy to let ``lambda.amazonaws.com``
call ``sts:AssumeRole``; otherwise both calls fail with ``InvalidParameterValueException`` "The role defined for the
function cannot be assumed by Lambda."
(https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html, errors: "InvalidParameterValueException:
One of the parameters in the request is not valid";
https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html: the execution role's trust policy
names the Lambda service principal). The trust policy is evaluated the way the local Lambda runtime assumes the role
when it runs the function (``sts_trust.assume_as_service``: ``aws:SourceAccount`` and ``aws:SourceArn`` of the
function), so what is created can also run.

Installed after every other Lambda patch so the check runs before any of them changes the function (CloudFormation
updates go through ``LambdaBackend.update_function_configuration`` too).

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.awslambda.models.LambdaBackend.create_function`` and
``LambdaBackend.update_function_configuration``.
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

from typing import Any

from auto_repair_local.iam_policy import Decision, Principal, Request, evaluate
from auto_repair_local.sts_trust import ROLE_ARN, _role

MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.awslambda.models.LambdaBackend.create_function(spec)",
    "moto.awslambda.models.LambdaBackend.update_function_configuration(function_name, qualifier, body)",
    "moto.awslambda.models.LambdaBackend.get_function(function_name_or_arn, qualifier)",
    "moto.awslambda.models.LambdaBackend#account_id",
    "moto.awslambda.models.LambdaBackend#region_name",
    "moto.awslambda.models.LambdaFunction#role",
    "moto.awslambda.models.LambdaFunction#function_arn",
    "moto.awslambda.exceptions.InvalidParameterValueException",
    "moto.iam.models.Role#assume_role_policy_document",
)

CANNOT_ASSUME = "The role defined for the function cannot be assumed by Lambda."


def lambda_may_assume(role_arn: str, account: str, function_arn: str) -> bool | None:
    """Does ``role_arn``'s trust policy let Lambda assume it for ``function_arn``? None when the role is not one
    this check judges (malformed ARN, another account, or missing: moto answers those itself)."""
    match = ROLE_ARN.match(role_arn)
    if not match or match.group(2) != account:
        return None
    role = _role(role_arn)
    if role is None:
        return None
    request = Request(principal=Principal(service="lambda.amazonaws.com"), action="sts:AssumeRole",
                      resource=role_arn,
                      context={"aws:SourceAccount": account, "aws:SourceArn": function_arn})
    return evaluate([role.assume_role_policy_document], request, resource_policy=True) is Decision.ALLOW


def install(ctx: Any) -> None:
    from moto.awslambda.exceptions import InvalidParameterValueException
    from moto.awslambda.models import LambdaBackend

    create, update = LambdaBackend.create_function, LambdaBackend.update_function_configuration
    if getattr(create, "_auto_repair_local_role_trust", False):
        return

    def _refuse_unless_assumable(backend: LambdaBackend, role_arn: Any, function_name: str) -> None:
        if not isinstance(role_arn, str) or not function_name:
            return
        function_arn = f"arn:aws:lambda:{backend.region_name}:{backend.account_id}:function:{function_name}"
        if lambda_may_assume(role_arn, backend.account_id, function_arn) is False:
            raise InvalidParameterValueException(CANNOT_ASSUME)

    def create_function(self: LambdaBackend, spec: dict[str, Any]) -> Any:
        _refuse_unless_assumable(self, spec.get("Role"), str(spec.get("FunctionName") or ""))
        return create(self, spec)

    def update_function_configuration(self: LambdaBackend, function_name: str, qualifier: str,
                                      body: dict[str, Any]) -> Any:
        if isinstance(body, dict) and "Role" in body:
            fn = self.get_function(function_name, qualifier)
            if body["Role"] != fn.role:
                _refuse_unless_assumable(self, body["Role"], fn.function_name)
        return update(self, function_name, qualifier, body)

    create_function._auto_repair_local_role_trust = True  # type: ignore[attr-defined]
    LambdaBackend.create_function = create_function  # type: ignore[method-assign]
    LambdaBackend.update_function_configuration = update_function_configuration  # type: ignore[method-assign]


# An execution role's trust policy as the Lambda guide shows it (for the local cloud's own fixtures and tools).
LAMBDA_TRUST_POLICY = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, '
    '"Action": "sts:AssumeRole"}]}'
)
