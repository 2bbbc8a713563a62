"""Make a running local cloud an AWS Organization: central account 123456789012 plus fixed member accounts.

Client side (talks to the local cloud's endpoint like any AWS client); used by the e2e tests and the demo:

    org = create_organization(cloud.endpoint)            # idempotent: reuses an organisation already there
    org.organization_id, org.root_id, org.ou_id           # o-..., r-..., ou-... (members sit in OU "workloads")
    org.members                                           # ("111111111111", "222222222222")
    org.path("111111111111")                              # "o-.../r-.../ou-.../" (aws:PrincipalOrgPaths)
    org.client("lambda", "111111111111", "eu-west-1")     # that account's administrator, in that region
    outside_client(cloud.endpoint, "sts", OUTSIDE_ACCOUNT) # an account that is not in the organisation

The organisation is created by the central account (moto organizations makes its id); members are created with
``CreateAccount`` carrying the ``auto-repair-local:account-id`` tag, which the local cloud honours
(``auto_repair_local.organization``) so their ids are the contract's. An account's administrator client signs with
the local ``test`` keys and names the account in the ``x-moto-account-id`` header: the local cloud treats such a
caller as that account's root (AWS's management-account path, assuming ``OrganizationAccountAccessRole``, works
too: ``org.assume(account, "OrganizationAccountAccessRole")``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from auto_repair_local.lambda_role_trust import LAMBDA_TRUST_POLICY
from auto_repair_local.organization import ACCOUNT_ID_TAG

CENTRAL_ACCOUNT = "123456789012"
MEMBER_ACCOUNTS = ("111111111111", "222222222222")
OUTSIDE_ACCOUNT = "999999999999"  # never a member: the "foreign account" of the tests
REGIONS = ("us-east-1", "eu-west-1")
OU_NAME = "workloads"


def account_client(endpoint: str, service: str, account: str, region: str = "us-east-1") -> Any:
    """A client acting as ``account``'s root (administrator) in the local cloud."""
    client = boto3.client(service, endpoint_url=endpoint, region_name=region,
                          aws_access_key_id="test", aws_secret_access_key="test")
    if account != CENTRAL_ACCOUNT:
        def add_header(request: Any, **_: Any) -> None:
            request.headers["x-moto-account-id"] = account

        client.meta.events.register("before-sign", add_header)
    return client


def outside_client(endpoint: str, service: str, account: str = OUTSIDE_ACCOUNT, region: str = "us-east-1") -> Any:
    if account == CENTRAL_ACCOUNT:
        raise ValueError("the outside account cannot be the central account")
    return account_client(endpoint, service, account, region)


def session_client(endpoint: str, service: str, credentials: dict[str, Any], region: str = "us-east-1") -> Any:
    """A client with STS credentials (AssumeRole's ``Credentials``): the local cloud maps them to the role's account."""
    return boto3.client(service, endpoint_url=endpoint, region_name=region,
                        aws_access_key_id=credentials["AccessKeyId"],
                        aws_secret_access_key=credentials["SecretAccessKey"],
                        aws_session_token=credentials["SessionToken"])


@dataclass(frozen=True)
class LocalOrganization:
    endpoint: str
    organization_id: str
    root_id: str
    ou_id: str
    members: tuple[str, ...]
    central_account: str = CENTRAL_ACCOUNT

    def path(self, account: str) -> str:
        """The account's aws:PrincipalOrgPaths entry (members sit in the OU, the central account at the root)."""
        if account == self.central_account:
            return f"{self.organization_id}/{self.root_id}/"
        return f"{self.organization_id}/{self.root_id}/{self.ou_id}/"

    def client(self, service: str, account: str, region: str = "us-east-1") -> Any:
        return account_client(self.endpoint, service, account, region)

    def assume(self, account: str, role_name: str, session: str = "local-org", region: str = "us-east-1",
               caller: Any = None) -> dict[str, Any]:
        """AssumeRole of ``role_name`` in ``account`` (as the central root unless ``caller`` is an STS client)."""
        sts = caller or self.client("sts", self.central_account, region)
        return dict(sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role_name}",
                                    RoleSessionName=session)["Credentials"])


def create_central_workflow_roles(endpoint: str, environment: str, trust: dict[str, Any] | None = None,
                                  central_account: str = CENTRAL_ACCOUNT) -> list[str]:
    """Stand-ins for the central stacks' workflow roles the member template's repair role trusts, in the central
    account (idempotent). IAM refuses a trust policy naming a role that does not exist ("Invalid principal in
    policy"), so a member stack can only be deployed after them, as after the central stacks on AWS. Their names."""
    template = (Path(__file__).resolve().parents[2] / "lambda-auto-repair-member.yaml").read_text()
    names = re.findall(r"iam::\$\{CentralAccountId\}:role/([\w-]+)-\$\{Environment\}", template)
    iam = account_client(endpoint, "iam", central_account)
    document = json.dumps(trust) if trust else LAMBDA_TRUST_POLICY
    for name in names:
        try:
            iam.create_role(RoleName=f"{name}-{environment}", AssumeRolePolicyDocument=document)
        except iam.exceptions.EntityAlreadyExistsException:
            iam.update_assume_role_policy(RoleName=f"{name}-{environment}", PolicyDocument=document)
    return names


def create_organization(endpoint: str, members: tuple[str, ...] = MEMBER_ACCOUNTS) -> LocalOrganization:
    """Create (or find) the organisation of the central account, OU ``workloads`` and the member accounts in it."""
    orgs = account_client(endpoint, "organizations", CENTRAL_ACCOUNT)
    try:
        org_id = orgs.describe_organization()["Organization"]["Id"]
    except orgs.exceptions.AWSOrganizationsNotInUseException:
        org_id = orgs.create_organization(FeatureSet="ALL")["Organization"]["Id"]
    root_id = orgs.list_roots()["Roots"][0]["Id"]
    units = orgs.list_organizational_units_for_parent(ParentId=root_id)["OrganizationalUnits"]
    ou_id = next((u["Id"] for u in units if u["Name"] == OU_NAME), None)
    if ou_id is None:
        ou_id = orgs.create_organizational_unit(ParentId=root_id, Name=OU_NAME)["OrganizationalUnit"]["Id"]
    existing = {a["Id"] for a in orgs.list_accounts()["Accounts"]}
    for account in members:
        if account in existing:
            continue
        orgs.create_account(Email=f"aws+{account}@example.com", AccountName=f"member-{account}",
                            Tags=[{"Key": ACCOUNT_ID_TAG, "Value": account}])
        orgs.move_account(AccountId=account, SourceParentId=root_id, DestinationParentId=ou_id)
    return LocalOrganization(endpoint=endpoint, organization_id=org_id, root_id=root_id, ou_id=ou_id,
                             members=tuple(members))
