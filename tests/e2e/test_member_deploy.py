"""deploy.sh --member and validate-deployment.sh --member against the local cloud (organisation mode, issue 15).

The local cloud's default account plays a member account here; the central deployment is another account (its
bus and roles are only named by the member stack, as in AWS, where the member cannot see them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from auto_repair_local.local_org import create_central_workflow_roles

REPO = Path(__file__).resolve().parents[2]
ENV = "staging"
CENTRAL_ACCOUNT = "999988887777"
CENTRAL_REGION = "eu-west-1"
STACK = f"lambda-auto-repair-member-{ENV}"
BUS_ARN = f"arn:aws:events:{CENTRAL_REGION}:{CENTRAL_ACCOUNT}:event-bus/lambda-auto-repair-bus-{ENV}"


def make_project(root: Path) -> Path:
    project = root / "project"
    project.mkdir()
    for name in ["deploy.sh", "validate-deployment.sh", "requirements-lambda.txt", "lambda-auto-repair-member.yaml"]:
        shutil.copy2(REPO / name, project / name)
    for directory in ("parameters", "scripts", "tools"):
        shutil.copytree(REPO / directory, project / directory, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (project / ".venv").symlink_to(REPO / ".venv")
    return project


def run(cloud: Any, project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=project, env=cloud.env(), capture_output=True, text=True, timeout=120)


def organization_id(cloud: Any) -> str:
    """The local cloud's organisation when it plays one, else a well-formed id the member stack names."""
    try:
        return cloud.client("organizations").describe_organization()["Organization"]["Id"]
    except ClientError:
        return "o-a1b2c3d4e5"


def stack_status(cloud: Any) -> str:
    try:
        status = cloud.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"]
    except ClientError:
        return "DOES_NOT_EXIST"
    return "DOES_NOT_EXIST" if status == "DELETE_COMPLETE" else status


def member_args(org: str, central: str = CENTRAL_ACCOUNT) -> list[str]:
    return ["--member", "--local", "--environment", ENV, "--central-account", central,
            "--central-region", CENTRAL_REGION, "--organization-id", org]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("member"))


def test_member_stack_deploys_validates_detects_a_broken_rule_and_is_removed(local_cloud: Any, project: Path) -> None:
    org = organization_id(local_cloud)
    # GIVEN a dry run WHEN deploy.sh --member --dry-run runs THEN it shows the stack and its parameters, creates nothing
    dry = run(local_cloud, project, "./deploy.sh", *member_args(org), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"Would create {STACK} from lambda-auto-repair-member.yaml with parameters:" in dry.stdout
    for line in (f"CentralAccountId = {CENTRAL_ACCOUNT}", f"CentralRegion = {CENTRAL_REGION}",
                 f"OrganizationId = {org}", "ScopeMode = opt-in", f"Environment = {ENV}"):
        assert line in dry.stdout, line
    assert stack_status(local_cloud) == "DOES_NOT_EXIST"

    # GIVEN the central deployment came first: its workflow roles, which the member's repair role trusts, exist in
    # the central account (IAM refuses a trust policy naming a role that does not exist, "Invalid principal in
    # policy", https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html)
    # (the five whose handlers assume the member role: tests/unit/test_member_template.py derives them)
    assert len(create_central_workflow_roles(local_cloud.endpoint, ENV, central_account=CENTRAL_ACCOUNT)) == 5
    # WHEN deploy.sh --member runs with the member account's credentials
    deployed = run(local_cloud, project, "./deploy.sh", *member_args(org))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    # THEN the stack is created and the script names the central bus, the repair role and the check to run
    assert stack_status(local_cloud) == "CREATE_COMPLETE"
    assert f"Forwards to: {BUS_ARN}" in deployed.stdout
    assert f"Repair role: arn:aws:iam::123456789012:role/lambda-auto-repair-member-{ENV}" in deployed.stdout
    assert f"./validate-deployment.sh --member --environment {ENV}" in deployed.stdout
    # AND the default-bus rule forwards to the central bus through the forwarder role
    (target,) = local_cloud.client("events").list_targets_by_rule(
        Rule=f"lambda-auto-repair-forward-alarms-{ENV}")["Targets"]
    assert target["Arn"] == BUS_ARN
    assert target["RoleArn"] == f"arn:aws:iam::123456789012:role/lambda-auto-repair-member-forwarder-{ENV}"

    iam = local_cloud.client("iam")
    forwarder = f"lambda-auto-repair-member-forwarder-{ENV}"
    # AND the forwarder's inline policy reads back as the JSON document IAM returns
    # (https://docs.aws.amazon.com/IAM/latest/APIReference/API_GetRolePolicy.html), as the script parses it
    (policy_name,) = iam.list_role_policies(RoleName=forwarder)["PolicyNames"]
    assert iam.get_role_policy(RoleName=forwarder, PolicyName=policy_name)["PolicyDocument"]["Statement"]

    # WHEN validate-deployment.sh --member runs THEN every check passes, in today's output style
    healthy = run(local_cloud, project, "./validate-deployment.sh", "--member", "--local", "--environment", ENV)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    for line in (f"Checking stack: {STACK}", "✅ Stack is healthy",
                 f"✅ Forwarding rule lambda-auto-repair-forward-alarms-{ENV} is enabled and targets {BUS_ARN}",
                 f"✅ Role lambda-auto-repair-member-forwarder-{ENV} may only put events on the central bus",
                 f"✅ Role lambda-auto-repair-member-{ENV} is trusted by the 5 central workflow roles of "
                 f"{CENTRAL_ACCOUNT} in {org} only", "✅ All checks passed"):
        assert line in healthy.stdout, line

    # WHEN the check expects another central account THEN the trust and the target are reported, exit 1
    other = run(local_cloud, project, "./validate-deployment.sh", "--member", "--local", "--environment", ENV,
                "--central-account", "111111111111")
    assert other.returncode == 1
    assert "❌ Forwarding rule" in other.stdout and "does not target the central bus" in other.stdout
    assert f"❌ Role lambda-auto-repair-member-{ENV} is not trusted exactly by the central workflow roles" in other.stdout

    # WHEN someone widens the forwarder's policy THEN validation names it
    wider = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["events:PutEvents", "events:PutRule"], "Resource": BUS_ARN}]}
    iam.put_role_policy(RoleName=forwarder, PolicyName="extra", PolicyDocument=json.dumps(wider))
    widened = run(local_cloud, project, "./validate-deployment.sh", "--member", "--local", "--environment", ENV)
    assert widened.returncode == 1
    assert f"❌ Role {forwarder} may do more than events:PutEvents on {BUS_ARN}" in widened.stdout
    iam.delete_role_policy(RoleName=forwarder, PolicyName="extra")

    # WHEN someone removes the rule's target THEN validation names it
    local_cloud.client("events").remove_targets(Rule=f"lambda-auto-repair-forward-alarms-{ENV}",
                                                Ids=[target["Id"]])
    broken = run(local_cloud, project, "./validate-deployment.sh", "--member", "--local", "--environment", ENV)
    assert broken.returncode == 1
    assert "❌ Forwarding rule" in broken.stdout and "1 problem(s) found" in broken.stdout

    # WHEN deploy.sh --member --destroy runs THEN the stack is gone
    removed = run(local_cloud, project, "./deploy.sh", "--member", "--local", "--environment", ENV, "--destroy")
    assert removed.returncode == 0, removed.stderr
    assert stack_status(local_cloud) == "DOES_NOT_EXIST"


def test_member_deploy_refuses_the_central_accounts_credentials(local_cloud: Any, project: Path) -> None:
    # GIVEN credentials of the central account itself (the local cloud's default account) and no member stack
    assert stack_status(local_cloud) == "DOES_NOT_EXIST"
    # WHEN deploy.sh --member runs
    proc = run(local_cloud, project, "./deploy.sh", *member_args(organization_id(local_cloud), "123456789012"))
    # THEN it stops before creating anything: the central main stack has the forwarding rule of the same name
    assert proc.returncode == 1
    assert "the credentials belong to the central account 123456789012" in proc.stderr
    assert stack_status(local_cloud) == "DOES_NOT_EXIST"


BAD_INPUT = {
    "no central account": (["--member", "-e", "dev", "--organization-id", "o-a1b2c3d4e5"], "needs --central-account"),
    "no organisation": (["--member", "-e", "dev", "--central-account", CENTRAL_ACCOUNT], "needs --organization-id"),
    "short account": (["--member", "-e", "dev", "--central-account", "12345", "--organization-id", "o-a1b2c3d4e5"],
                      "invalid --central-account '12345'"),
    "bad organisation": (["--member", "-e", "dev", "--central-account", CENTRAL_ACCOUNT, "--organization-id", "org1"],
                         "invalid --organization-id 'org1'"),
    "bad central region": (["--member", "-e", "dev", "--central-account", CENTRAL_ACCOUNT, "--organization-id",
                            "o-a1b2c3d4e5", "--central-region", "Europe"], "invalid --central-region 'Europe'"),
    "central option alone": (["-e", "dev", "--email", "a@example.com", "--central-account", CENTRAL_ACCOUNT],
                             "go with --member"),
    "bad organisation, central stacks": (["-e", "dev", "--email", "a@example.com", "--organization-id", "o-ABC"],
                                         "invalid --organization-id 'o-ABC'"),
    "email with member": (["--member", "-e", "dev", "--email", "a@example.com", "--central-account",
                           CENTRAL_ACCOUNT, "--organization-id", "o-a1b2c3d4e5"], "configure the central stacks"),
    "package-only with member": (["--member", "-e", "dev", "--package-only"], "--package-only cannot be combined"),
    "no value": (["--member", "-e", "dev", "--central-account"], "option --central-account requires a value"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_member_options_are_checked_before_any_aws_call(local_cloud: Any, project: Path, case: str) -> None:
    args, message = BAD_INPUT[case]
    proc = run(local_cloud, project, "./deploy.sh", *args)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
