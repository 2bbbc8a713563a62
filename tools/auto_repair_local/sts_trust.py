"""STS AssumeRole checks the target role's trust policy, as AWS does; moto hands out credentials for any role ARN.

A caller's principal is what its credentials are: a role session moto issued (``arn:aws:sts::<acct>:assumed-role/
<role>/<session>``), an IAM user's access key, or otherwise (the local cloud's ``test`` keys) the account's root.
The request context carries ``aws:PrincipalArn``, ``aws:PrincipalAccount``, ``aws:PrincipalOrgID``,
``aws:PrincipalOrgPaths`` (from the local organisation), ``sts:ExternalId``, ``sts:RoleSessionName`` and
``aws:ResourceOrgID``/``aws:ResourceAccount`` of the role. The role must exist and its trust policy must allow
``sts:AssumeRole`` with no Deny; across accounts, a role session caller also needs an Allow for ``sts:AssumeRole`` on
the role in its own role's identity policies (the local cloud's root keys are an administrator's). Otherwise
``AccessDenied``, worded as AWS words it.
https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html and
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html

Services (Lambda running a function, EventBridge delivering with a target role) assume roles in-process through
``assume_as_service``: the trust policy must name the service principal, with ``aws:SourceAccount``/``aws:SourceArn``
in the context (https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html).

A role's trust policy may only name IAM roles and users that exist: IAM turns such an ARN into the principal's
unique id when it saves the policy, so CreateRole and UpdateAssumeRolePolicy (and a CloudFormation
``AWS::IAM::Role``) with an unknown role or user ARN fail with ``MalformedPolicyDocument`` "Invalid principal in
policy" (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html, "IAM role
principals"; https://repost.aws/knowledge-center/iam-trust-policy-error). Accounts (id or root ARN), role session
ARNs, service principals and ``*`` are not looked up.

A signed request whose access key id is neither one of the local keys (``LOCAL_ACCESS_KEYS``) nor one the local
IAM/STS issued (an IAM user's key, an AssumeRole session's) is refused before it reaches the service, as AWS refuses
a key it does not know: ``InvalidClientTokenId`` "The security token included in the request is invalid." (S3:
``InvalidAccessKeyId``), https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html. moto would run it
as the default account's root. Unsigned requests (moto's ``AKIAEXAMPLE``) and presigned URLs are left to moto.

Patches (see ``MOTO_TOUCHPOINTS``): wraps ``moto.sts.responses.TokenResponse.assume_role``,
``moto.iam.models.IAMBackend.create_role``, ``IAMBackend.update_assume_role_policy`` and
``moto.core.authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action``.
Written for moto ``>=5.2.5,<5.3`` (``MOTO_VERSIONS``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from auto_repair_local.iam_policy import Decision, PolicyError, Principal, Request, evaluate, load
from auto_repair_local.organization import org_facts

MOTO_VERSIONS = ">=5.2.5,<5.3"
MOTO_TOUCHPOINTS = (
    "moto.sts.responses.TokenResponse.assume_role()",
    "moto.core.exceptions.ServiceException",
    "moto.sts.responses.TokenResponse#current_account",
    "moto.sts.responses.TokenResponse#querystring",
    "moto.sts.models.sts_backends",
    "moto.sts.models.STSBackend.assume_role(region_name, role_session_name, role_arn, policy, duration, external_id)",
    "moto.sts.models.STSBackend.get_assumed_role_from_access_key(access_key_id)",
    "moto.iam.models.iam_backends",
    "moto.iam.models.IAMBackend.get_user_from_access_key_id(access_key_id)",
    "moto.iam.models.IAMBackend.get_role_by_arn(arn)",
    "moto.iam.models.Role#assume_role_policy_document",
    "moto.iam.models.Role#policies",
    "moto.iam.models.Role#managed_policies",
    "moto.iam.models.ManagedPolicy#default_version_id",
    "moto.iam.models.ManagedPolicy#versions",
    "moto.iam.models.PolicyVersion#version_id",
    "moto.iam.models.PolicyVersion#document",
    "moto.iam.models.IAMBackend.create_role(role_name, assume_role_policy_document)",
    "moto.iam.models.IAMBackend.update_assume_role_policy(role_name, policy_document)",
    "moto.iam.models.IAMBackend#users",
    "moto.iam.models.User#arn",
    "moto.iam.exceptions.MalformedPolicyDocument",
    "moto.core.authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action(iam_request_cls, resource)",
    "moto.core.exceptions.InvalidClientTokenIdError",
    "moto.core.exceptions.JsonRESTError",
    "moto.core.utils.get_service_model(service_name)",
    "moto.core.responses.BaseResponse#boto3_service_name",
    "moto.s3.exceptions.S3InvalidAccessKeyIdError",
    "moto.s3.exceptions.BucketInvalidAccessKeyIdError",
    "moto.iam.access_control.S3IAMRequest",
    "moto.iam.models.IAMBackend#access_keys",
)

# The local cloud's own keys: "test" is the administrator's (every client of the project signs with it); "ak" is
# the key moto's Step Functions interpreter signs its task calls with (moto.stepfunctions.parser.asl.utils.
# boto_client), i.e. the Step Functions service calling on the state machine's behalf.
LOCAL_ACCESS_KEYS = frozenset({"test", "ak"})
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")

log = logging.getLogger("auto_repair_local.sts_trust")

ROLE_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:.*/)?([\w+=,.@-]+)$")
USER_ARN = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):user/(?:.*/)?([\w+=,.@-]+)$")


class AccessDeniedError(Exception):
    """The request is not allowed; ``message`` is AWS's wording."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    arn: str
    account: str


def principal_context(principal: Principal) -> dict[str, Any]:
    """The global condition keys AWS sets for a principal (org keys only when its account is in an organisation)."""
    context: dict[str, Any] = {}
    if principal.service:
        return context
    context["aws:PrincipalArn"] = principal.principal_arn
    context["aws:PrincipalAccount"] = principal.account
    context["aws:PrincipalType"] = "AssumedRole" if principal.role_arn else (
        "Account" if principal.arn.endswith(":root") else "User")
    facts = org_facts(principal.account)
    if facts:
        context["aws:PrincipalOrgID"] = facts.organization_id
        context["aws:PrincipalOrgPaths"] = [facts.path]
    return context


def resource_context(account: str) -> dict[str, Any]:
    context: dict[str, Any] = {"aws:ResourceAccount": account}
    facts = org_facts(account)
    if facts:
        context["aws:ResourceOrgID"] = facts.organization_id
        context["aws:ResourceOrgPaths"] = [facts.path]
    return context


def known_access_key(access_key_id: str) -> bool:
    """A local key (``LOCAL_ACCESS_KEYS``), or one the local IAM (user keys) or STS (session keys) issued."""
    from moto.iam.models import iam_backends

    if access_key_id in LOCAL_ACCESS_KEYS:
        return True
    for _account, backends in list(iam_backends.items()):
        for partition in list(backends.keys()):
            if access_key_id in backends[partition].access_keys:
                return True
    return False


def caller(access_key_id: str, account: str) -> Principal:
    """The principal behind an access key the request was signed with (``account``: what moto resolved it to).
    Unknown keys never get here (``InvalidClientTokenId``); the ``test`` keys are the account's root."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    session = sts_backends[account]["aws"].get_assumed_role_from_access_key(access_key_id)
    if session is not None:
        return Principal(arn=session.arn, account=session.account_id)
    user = iam_backends[account]["aws"].get_user_from_access_key_id(access_key_id)
    if user is not None:
        return Principal(arn=user.arn, account=account)
    return Principal(arn=f"arn:aws:iam::{account}:root", account=account)


def identity_policies(role_arn: str) -> list[str]:
    """The inline and attached managed policy documents of an existing role ([] if it does not exist)."""
    role = _role(role_arn)
    if role is None:
        return []
    docs = list(role.policies.values())  # JSON text (cfn_fixes stores a template's inline policies so)
    for managed in role.managed_policies.values():
        default = getattr(managed, "default_version_id", None)
        version = next((v for v in getattr(managed, "versions", []) if v.version_id == default), None)
        document = getattr(version, "document", None)
        if document:
            docs.append(document if isinstance(document, str) else json.dumps(document))
    return docs


def _role(role_arn: str) -> Any:
    from moto.iam.models import iam_backends

    m = ROLE_ARN.match(role_arn)
    if not m:
        return None
    try:
        return iam_backends[m.group(2)]["aws"].get_role_by_arn(role_arn)
    except Exception:  # moto raises IAMNotFoundException
        return None


def invalid_trust_principal(document: str | dict[str, Any] | None) -> str | None:
    """IAM's message for the first ``{"AWS": ...}`` principal of a trust policy that names an IAM role or user that
    does not exist (None if every one exists or is not an IAM identity to look up)."""
    try:
        statements = load(document).get("Statement", [])
    except PolicyError:
        return None  # moto's own validator answers for documents that are not JSON
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, dict):
            continue
        for element in (statement.get("Principal"), statement.get("NotPrincipal")):
            if not isinstance(element, dict):
                continue
            values = element.get("AWS", [])
            for value in values if isinstance(values, list) else [values]:
                if not _identity_exists(str(value)):
                    return f'Invalid principal in policy: "AWS":"{value}"'
    return None


def _identity_exists(value: str) -> bool:
    from moto.iam.models import iam_backends

    if ROLE_ARN.match(value):
        return _role(value) is not None
    user = USER_ARN.match(value)
    if user:
        return any(u.arn == value for u in list(iam_backends[user.group(2)]["aws"].users.values()))
    return True


def check_assume_role(principal: Principal, role_arn: str, *, session_name: str = "",
                      external_id: str | None = None, extra_context: dict[str, Any] | None = None,
                      tagged: bool = False) -> None:
    """Raise AccessDeniedError unless ``principal`` may call sts:AssumeRole on ``role_arn`` (and sts:TagSession when
    the request passes session tags, https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html)."""
    for action in ("sts:AssumeRole", "sts:TagSession") if tagged else ("sts:AssumeRole",):
        _check(principal, role_arn, action, session_name, external_id, extra_context)


def _check(principal: Principal, role_arn: str, action: str, session_name: str, external_id: str | None,
           extra_context: dict[str, Any] | None) -> None:
    who = principal.arn or principal.service
    denied = AccessDeniedError(f"User: {who} is not authorized to perform: {action} on resource: {role_arn}")
    role = _role(role_arn)
    if role is None:
        raise denied
    role_account = ROLE_ARN.match(role_arn).group(2)  # type: ignore[union-attr]
    context: dict[str, Any] = {**principal_context(principal), **resource_context(role_account)}
    if session_name:
        context["sts:RoleSessionName"] = session_name
    if external_id is not None:
        context["sts:ExternalId"] = external_id
    context.update(extra_context or {})
    request = Request(principal=principal, action=action, resource=role_arn, context=context)
    trust = evaluate([role.assume_role_policy_document], request, resource_policy=True)
    if trust is not Decision.ALLOW:
        log.info("AssumeRole of %s by %s: trust policy %s", role_arn, who, trust)
        raise denied
    # Across accounts the caller's own account must allow it too: a role session's identity policies. The local
    # cloud's root keys stand for an administrator (AdministratorAccess), so they are not checked.
    if not principal.service and principal.role_arn and principal.account != role_account:
        own = evaluate(identity_policies(principal.role_arn), request)
        if own is not Decision.ALLOW:
            log.info("AssumeRole of %s by %s: identity policies %s", role_arn, who, own)
            raise denied


def _issue(role_arn: str, session_name: str, region: str, duration: int = 3600,
           external_id: str | None = None) -> Credentials:
    from moto.sts.models import sts_backends

    account = ROLE_ARN.match(role_arn).group(2)  # type: ignore[union-attr]
    assumed = sts_backends[account]["aws"].assume_role(
        region_name=region, role_session_name=session_name, role_arn=role_arn,
        policy=None, duration=duration, external_id=external_id,  # type: ignore[arg-type]  # moto's hints; None is what its API passes
    )
    return Credentials(assumed.access_key_id, assumed.secret_access_key, assumed.session_token, assumed.arn,
                       assumed.account_id)


def assume_as_service(service: str, role_arn: str, session_name: str, region: str, *,
                      source_account: str, source_arn: str = "") -> Credentials:
    """A service principal assumes ``role_arn`` (trust policy checked); the credentials act in the role's account."""
    context = {"aws:SourceAccount": source_account}
    if source_arn:
        context["aws:SourceArn"] = source_arn
    check_assume_role(Principal(service=service), role_arn, session_name=session_name, extra_context=context)
    return _issue(role_arn, session_name, region)


def install(ctx: Any) -> None:
    from moto.core.exceptions import ServiceException
    from moto.sts.responses import TokenResponse

    original = TokenResponse.assume_role
    if getattr(original, "_auto_repair_local", False):
        return

    class AccessDenied(ServiceException):
        code = "AccessDenied"

    def assume_role(self: TokenResponse) -> Any:
        principal = caller(self.get_access_key(), self.current_account)
        try:
            check_assume_role(
                principal, self._get_param("RoleArn") or "",
                session_name=self._get_param("RoleSessionName") or "",
                external_id=self._get_param("ExternalId"),
                tagged=any(str(k).startswith("Tags.member") for k in self.querystring),
            )
        except AccessDeniedError as exc:
            raise AccessDenied(exc.message) from None
        return original(self)

    assume_role._auto_repair_local = True  # type: ignore[attr-defined]
    TokenResponse.assume_role = assume_role  # type: ignore[method-assign]
    _install_trust_principal_checks()
    _install_access_key_check()


def _install_access_key_check() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.exceptions import InvalidClientTokenIdError, JsonRESTError
    from moto.iam.access_control import S3IAMRequest
    from moto.s3.exceptions import BucketInvalidAccessKeyIdError, S3InvalidAccessKeyIdError

    original = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def authenticate(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        signed = _CREDENTIAL.search(str(getattr(self, "headers", {}).get("Authorization") or ""))
        if signed and not known_access_key(signed.group(1)):
            log.info("request signed with unknown access key %s refused", signed.group(1))
            if iam_request_cls is S3IAMRequest:
                bucket = (getattr(self, "data", None) or {}).get("BucketName")
                raise BucketInvalidAccessKeyIdError(bucket=bucket) if bucket else S3InvalidAccessKeyIdError()
            if _protocol(self) in ("json", "rest-json"):  # a JSON body, or the SDK reads no error code
                refused = JsonRESTError("InvalidClientTokenId", InvalidClientTokenIdError().message)
                refused.code = 403
                raise refused
            raise InvalidClientTokenIdError()
        original(self, iam_request_cls, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authenticate  # type: ignore[method-assign]


def _install_trust_principal_checks() -> None:
    from moto.iam.exceptions import MalformedPolicyDocument
    from moto.iam.models import IAMBackend

    create_role, update_trust = IAMBackend.create_role, IAMBackend.update_assume_role_policy

    def checked_create_role(self: IAMBackend, role_name: str, assume_role_policy_document: str,
                            *args: Any, **kwargs: Any) -> Any:
        problem = invalid_trust_principal(assume_role_policy_document)
        if problem:
            raise MalformedPolicyDocument(problem)
        return create_role(self, role_name, assume_role_policy_document, *args, **kwargs)

    def checked_update(self: IAMBackend, role_name: str, policy_document: str) -> None:
        problem = invalid_trust_principal(policy_document)
        if problem:
            self.get_role(role_name)  # an unknown role is NoSuchEntity first
            raise MalformedPolicyDocument(problem)
        update_trust(self, role_name, policy_document)

    IAMBackend.create_role = checked_create_role  # type: ignore[method-assign]
    IAMBackend.update_assume_role_policy = checked_update  # type: ignore[method-assign]


def _protocol(handler: Any) -> str:
    from moto.core.utils import get_service_model

    try:
        return str(get_service_model(handler.boto3_service_name).protocol)
    except Exception:  # a service botocore does not model: moto's XML error is as good as any
        return ""
