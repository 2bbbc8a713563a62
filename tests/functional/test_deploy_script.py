"""deploy.sh and validate-deployment.sh pre-flight checks and --dry-run, against an in-process moto server.

No test reaches real AWS: every run has fake credentials and AWS_ENDPOINT_URL pointing at 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy.sh"
VALIDATE = REPO / "validate-deployment.sh"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moto_server():
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


# Shared by the tests that create nothing (they assert the cloud stays empty).
endpoint = pytest.fixture(scope="module")(_moto_server)
# For a test that leaves stacks behind.
own_endpoint = pytest.fixture(_moto_server)


def base_env(endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/nonexistent/aws-config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/aws-credentials",
        PATH=f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str], script: Path = DEPLOY) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(script), *args], env=env, capture_output=True, text=True, timeout=300, cwd=REPO
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def stack_count(endpoint: str) -> int:
    cfn = boto3.client(
        "cloudformation",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    return len(cfn.list_stacks()["StackSummaries"])


def bucket_count(endpoint: str) -> int:
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    return len(s3.list_buckets()["Buckets"])


# ---------------------------------------------------------------------------------------------- pre-flight
@pytest.mark.parametrize("script", [DEPLOY, VALIDATE], ids=["deploy", "validate"])
def test_bad_environment_is_one_clear_line_and_non_zero(endpoint: str, script: Path) -> None:
    # GIVEN an environment that does not exist WHEN the script runs
    proc = run(
        ["--environment", "qa", "--email", "ops@example.com"]
        if script == DEPLOY
        else ["--environment", "qa"],
        base_env(endpoint),
        script,
    )
    # THEN it exits non-zero with one line naming the problem, and touched nothing
    assert proc.returncode != 0
    line = one_error_line(proc)
    assert "--environment" in line and "'qa'" in line and "dev, staging, prod" in line
    assert proc.stdout == ""


@pytest.mark.parametrize("email", ["not-an-email", "ops@", "@example.com", "ops team@example.com"])
def test_bad_email_is_one_clear_line_and_non_zero(endpoint: str, email: str) -> None:
    # GIVEN a malformed e-mail WHEN deploy.sh runs THEN one line explains it and the exit is non-zero
    proc = run(["--environment", "dev", "--email", email], base_env(endpoint))
    assert proc.returncode != 0
    line = one_error_line(proc)
    assert "--email" in line and email in line
    assert stack_count(endpoint) == 0


def test_missing_email_is_one_clear_line(endpoint: str) -> None:
    proc = run(["--environment", "dev"], base_env(endpoint))
    assert proc.returncode != 0
    assert "--email is required" in one_error_line(proc)


def test_unknown_option_is_one_clear_line(endpoint: str) -> None:
    proc = run(["--environment", "dev", "--email", "a@example.com", "--frobnicate"], base_env(endpoint))
    assert proc.returncode != 0
    assert "--frobnicate" in one_error_line(proc)


def _path_without(tmp_path: Path, missing: str) -> str:
    """A PATH holding links to every program of the current PATH except `missing`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in [str(REPO / ".venv" / "bin"), *os.environ.get("PATH", "").split(os.pathsep)]:
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = Path(directory) / name
            link = bin_dir / name
            if name != missing and not link.exists() and os.access(target, os.X_OK) and target.is_file():
                link.symlink_to(target)
    return str(bin_dir)


@pytest.mark.parametrize("script", [DEPLOY, VALIDATE], ids=["deploy", "validate"])
def test_missing_jq_is_one_clear_line(endpoint: str, tmp_path: Path, script: Path) -> None:
    # GIVEN a PATH without jq WHEN the script runs THEN it says jq is missing, before touching anything
    env = base_env(endpoint, PATH=_path_without(tmp_path, "jq"))
    assert shutil.which("jq", path=env["PATH"]) is None
    proc = run(
        ["--environment", "dev", "--email", "a@example.com"]
        if script == DEPLOY
        else ["--environment", "dev"],
        env,
        script,
    )
    assert proc.returncode != 0
    assert "'jq' is not installed" in one_error_line(proc)
    assert stack_count(endpoint) == 0


@pytest.mark.parametrize("script", [DEPLOY, VALIDATE], ids=["deploy", "validate"])
def test_missing_credentials_is_one_clear_line(endpoint: str, script: Path) -> None:
    # GIVEN no credentials anywhere (no keys, no profile, no config files, no instance metadata)
    env = base_env(endpoint)
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    # WHEN the script runs
    proc = run(
        ["--environment", "dev", "--email", "a@example.com"]
        if script == DEPLOY
        else ["--environment", "dev"],
        env,
        script,
    )
    # THEN one line says the credentials are the problem
    assert proc.returncode != 0
    line = one_error_line(proc)
    assert "credentials" in line.lower()
    assert "test" not in line  # no secret (nor fake secret) is echoed


def test_help_exits_zero_and_documents_every_flag(endpoint: str) -> None:
    proc = run(["--help"], base_env(endpoint))
    assert proc.returncode == 0
    for flag in (
        "--environment",
        "--email",
        "--enable-approval",
        "--knowledge-base-id",
        "--bedrock-model-id",
        "--guardrail-id",
        "--guardrail-version",
        "--region",
        "--profile",
        "--dry-run",
        "--local",
        "--package-only",
        "--destroy",
        "--help",
    ):
        assert flag in proc.stdout, flag


def test_validate_help_exits_zero(endpoint: str) -> None:
    proc = run(["--help"], base_env(endpoint), VALIDATE)
    assert proc.returncode == 0
    assert "--environment" in proc.stdout and "--region" in proc.stdout and "--local" in proc.stdout


# ---------------------------------------------------------------------------------------------- dry run
@pytest.mark.skipif(
    not (REPO / "lambda-auto-repair-functions.yaml").exists(), reason="functions template not landed"
)
def test_dry_run_validates_everything_and_creates_nothing(endpoint: str) -> None:
    # GIVEN an empty cloud
    assert stack_count(endpoint) == 0 and bucket_count(endpoint) == 0
    # WHEN the guide's dry-run command runs
    proc = run(["--environment", "dev", "--email", "test@example.com", "--dry-run"], base_env(endpoint))
    # THEN it succeeds, linted and validated all three templates and shows the parameters per stack
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in (
        "lambda-auto-repair-main.yaml",
        "lambda-auto-repair-functions.yaml",
        "lambda-auto-repair-monitoring.yaml",
    ):
        assert f"cfn-lint {name}: ok" in proc.stdout
    assert "validate-template lambda-auto-repair-main.yaml: ok" in proc.stdout
    for stack in ("main", "functions", "monitoring"):
        assert f"Would create lambda-auto-repair-{stack}-dev" in proc.stdout
    assert "NotificationEmail = test@example.com" in proc.stdout
    assert "DurationThreshold = 45000" in proc.stdout  # from parameters/dev.json
    assert "CodeS3Key = code/auto-repair-" in proc.stdout
    # AND nothing was created
    assert stack_count(endpoint) == 0 and bucket_count(endpoint) == 0


@pytest.mark.skipif(
    not (REPO / "lambda-auto-repair-functions.yaml").exists(), reason="functions template not landed"
)
def test_dry_run_flags_override_the_parameter_file(endpoint: str) -> None:
    # GIVEN dev (approval off in the file) WHEN --enable-approval and a knowledge base are given
    proc = run(
        [
            "--environment",
            "dev",
            "--email",
            "test@example.com",
            "--enable-approval",
            "--knowledge-base-id",
            "kb-1234567890abcdef",
            "--organization-id",
            "o-a1b2c3d4e5",
            "--dry-run",
        ],
        base_env(endpoint),
    )
    # THEN the flags win over parameters/dev.json
    assert proc.returncode == 0, proc.stderr
    assert "EnableApprovalWorkflow = true" in proc.stdout
    assert "EnableApprovalWorkflow = false" not in proc.stdout
    assert "KnowledgeBaseId = kb-1234567890abcdef" in proc.stdout
    # AND --organization-id (central mode) sets OrganizationId of the stacks that declare it, functions and monitoring
    assert proc.stdout.count("OrganizationId = o-a1b2c3d4e5") == 2, proc.stdout
    assert stack_count(endpoint) == 0


def test_dry_run_takes_the_bedrock_model_and_guardrail_from_flags_or_the_parameter_file(endpoint: str) -> None:
    # GIVEN dev, whose parameter file names no model and the DRAFT guardrail version
    # WHEN an inference profile, a guardrail and its version are given as flags
    proc = run(["--environment", "dev", "--email", "test@example.com", "--bedrock-model-id",
                "us.anthropic.claude-3-5-sonnet-20241022-v2:0", "--guardrail-id", "gr-abc123",
                "--guardrail-version", "3", "--dry-run"], base_env(endpoint))
    # THEN the functions stack receives them
    assert proc.returncode == 0, proc.stderr
    assert "BedrockModelId = us.anthropic.claude-3-5-sonnet-20241022-v2:0" in proc.stdout
    assert "BedrockGuardrailId = gr-abc123" in proc.stdout
    assert "BedrockGuardrailVersion = 3" in proc.stdout
    # AND without flags the file's keys are passed
    plain = run(["--environment", "dev", "--email", "test@example.com", "--dry-run"], base_env(endpoint))
    assert "BedrockGuardrailVersion = DRAFT" in plain.stdout


@pytest.mark.parametrize(("flag", "value"), [
    ("--bedrock-model-id", "model with spaces"),
    ("--guardrail-id", "gr;rm -rf"),
    ("--guardrail-version", "latest"),
    ("--guardrail-version", "0"),
])
def test_bad_bedrock_flags_are_refused(endpoint: str, flag: str, value: str) -> None:
    proc = run(["--environment", "dev", "--email", "test@example.com", flag, value, "--dry-run"], base_env(endpoint))
    assert proc.returncode != 0
    assert f"invalid {flag}" in one_error_line(proc)


@pytest.mark.parametrize("value", ["org1", "o-short", "o-ABCDEFGHIJ", "o-a1b2c3d4e5;rm", ""])
def test_a_bad_organization_id_for_the_central_stacks_is_refused_before_anything_is_deployed(
    endpoint: str, value: str
) -> None:
    # GIVEN an empty cloud WHEN the central stacks are deployed with a malformed --organization-id
    proc = run(["--environment", "dev", "--email", "test@example.com", "--organization-id", value], base_env(endpoint))
    # THEN one line names it (the OrganizationId pattern, o- and 10-32 lowercase letters or digits) and nothing exists
    assert proc.returncode != 0
    line = one_error_line(proc)
    assert ("invalid --organization-id" in line and repr(value) in line) if value else "requires a value" in line
    assert stack_count(endpoint) == 0 and bucket_count(endpoint) == 0


@pytest.mark.skipif(
    not (REPO / "lambda-auto-repair-functions.yaml").exists(), reason="functions template not landed"
)
def test_package_is_reproducible_across_copies(endpoint: str, tmp_path: Path) -> None:
    # GIVEN the same sources in two separate copies with different file times
    keys = []
    for attempt in range(2):
        project = tmp_path / f"copy{attempt}"
        project.mkdir()
        for name in (
            "deploy.sh",
            "requirements-lambda.txt",
            "lambda-auto-repair-main.yaml",
            "lambda-auto-repair-functions.yaml",
            "lambda-auto-repair-monitoring.yaml",
        ):
            shutil.copy2(REPO / name, project / name)
        for directory in ("parameters", "scripts", "tools", "knowledge"):
            shutil.copytree(
                REPO / directory, project / directory, ignore=shutil.ignore_patterns("__pycache__")
            )
        # symlinks=True: src/auto_repair/knowledge_data stays the link to knowledge/ that a checkout has
        shutil.copytree(
            REPO / "src",
            project / "src",
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        (project / "src" / "auto_repair" / "__pycache__").mkdir(exist_ok=True)
        (project / "src" / "auto_repair" / "__pycache__" / f"junk{attempt}.pyc").write_bytes(b"x")
        for path in project.rglob("*"):
            os.utime(path, (1_000_000_000 + attempt * 3600, 1_000_000_000 + attempt * 3600))
        (project / ".venv").symlink_to(REPO / ".venv")
        (REPO / ".build").mkdir(exist_ok=True)
        (project / ".build").symlink_to(REPO / ".build")
        # WHEN each is packaged (dry run: built locally, nothing uploaded)
        proc = subprocess.run(
            [str(project / "deploy.sh"), "--environment", "dev", "--email", "a@example.com", "--dry-run"],
            cwd=project,
            env=base_env(endpoint),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        keys.append(
            next(line.split()[-1] for line in proc.stdout.splitlines() if "would be uploaded as" in line)
        )
    # THEN the content-addressed keys are identical (byte-identical zips, no .pyc, fixed timestamps)
    assert keys[0] == keys[1]
    assert keys[0].startswith("code/auto-repair-") and len(keys[0]) == len("code/auto-repair-.zip") + 64


# ---------------------------------------------------------------------------------------------- validation
TARGETS_STACK_TEMPLATE = """
Resources:
  TargetsRole:
    Type: AWS::IAM::Role
    Properties:
      RoleName: lambda-auto-repair-targets-role-dev
      AssumeRolePolicyDocument:
        Version: '2012-10-17'
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
  TargetsFunction:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: lambda-auto-repair-targets-dev
      Runtime: python3.12
      Handler: index.handler
      Role: !GetAtt TargetsRole.Arn
      Code:
        ZipFile: "def handler(event, context):\n    return None\n"
"""


def test_validate_checks_the_functions_the_stacks_declare(own_endpoint: str) -> None:
    # GIVEN only a monitoring stack, whose one function was then deleted behind CloudFormation's back
    fake = {"region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}
    cfn = boto3.client("cloudformation", endpoint_url=own_endpoint, **fake)
    cfn.create_stack(
        StackName="lambda-auto-repair-monitoring-dev",
        TemplateBody=TARGETS_STACK_TEMPLATE,
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    boto3.client("lambda", endpoint_url=own_endpoint, **fake).delete_function(
        FunctionName="lambda-auto-repair-targets-dev"
    )
    # WHEN validate-deployment.sh runs
    proc = run(["--environment", "dev"], base_env(own_endpoint), VALIDATE)
    # THEN it reports the missing function by the name the stack gave it, and no function of a missing stack
    assert proc.returncode == 1, proc.stderr
    functions = [line for line in proc.stdout.splitlines() if line.startswith("  ❌ Function ")]
    assert len(functions) == 1
    assert functions[0].startswith("  ❌ Function lambda-auto-repair-targets-dev not found (")


def test_validate_without_stacks_says_no_function_was_found(endpoint: str) -> None:
    # GIVEN no stacks at all WHEN validate-deployment.sh runs THEN the functions check says so in one line
    proc = run(["--environment", "staging"], base_env(endpoint), VALIDATE)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    at = lines.index("Validating Lambda functions...")
    assert lines[at + 1].startswith(
        "  ❌ No Lambda functions found in the stacks lambda-auto-repair-main-staging "
    )
    assert lines[at + 2] == "Validating Step Functions..."


# ---------------------------------------------------------------------------------------------- issue 12
def project_copy(tmp_path: Path) -> Path:
    """The files deploy.sh reads, copied so a test may change a parameter file or put a fake CLI in front."""
    project = tmp_path / "project"
    project.mkdir()
    for name in (
        "deploy.sh",
        "lambda-auto-repair-main.yaml",
        "lambda-auto-repair-functions.yaml",
        "lambda-auto-repair-monitoring.yaml",
    ):
        shutil.copy2(REPO / name, project / name)
    for directory in ("parameters", "scripts", "knowledge"):
        shutil.copytree(REPO / directory, project / directory)
    (project / ".venv").symlink_to(REPO / ".venv")
    return project


@pytest.mark.parametrize(("environment", "period"), [("dev", 10), ("staging", 30), ("prod", 90)])
def test_sub_minute_alarm_periods_are_refused_outside_local(
    endpoint: str, tmp_path: Path, environment: str, period: int
) -> None:
    """AWS/Lambda metrics are one-minute metrics (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics.html):
    a 10 s or 30 s alarm on them does not behave on AWS as it does in the local cloud."""
    # GIVEN a parameter file outside local with a period that is not a multiple of 60
    project = project_copy(tmp_path)
    stacks_before = stack_count(endpoint)
    path = project / "parameters" / f"{environment}.json"
    values = json.loads(path.read_text())
    path.write_text(json.dumps(values | {"AlarmPeriodSeconds": period}))
    # WHEN deploy.sh runs
    proc = run_in(project, ["--environment", environment, "--email", "ops@example.com"], base_env(endpoint))
    # THEN one line names the parameter, the rule and the reason, and nothing was created
    assert proc.returncode != 0
    line = one_error_line(proc)
    assert f"AlarmPeriodSeconds {period}" in line and "multiple of 60" in line and "local" in line
    assert stack_count(endpoint) == stacks_before


def run_in(project: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(project / "deploy.sh"), *args], env=env, capture_output=True, text=True, timeout=300, cwd=project
    )


FAKE_AWS = """#!/usr/bin/env bash
# Answers the calls a test scripts (by "<service> <operation>"), passes every other call to the real CLI.
echo "$*" >>"{log}"
case "$1 $2" in
{cases}
esac
exec "{real}" "$@"
"""


def fake_aws(tmp_path: Path, cases: dict[str, str]) -> tuple[dict[str, str], Path]:
    """PATH and call log for an `aws` that answers `cases` ("service operation" -> bash) and passes the rest on."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "aws-calls.log"
    body = "\n".join(f'  "{call}") {script} ;;' for call, script in cases.items())
    script = bin_dir / "aws"
    script.write_text(FAKE_AWS.format(log=log, cases=body, real=REPO / ".venv" / "bin" / "aws"))
    script.chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    }, log


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("Throttling", "Rate exceeded"),
        ("ExpiredToken", "The security token included in the request is expired"),
        ("RequestExpired", "Request has expired."),
    ],
)
def test_a_failed_describe_stacks_stops_the_deploy_and_is_not_read_as_absent(
    endpoint: str, tmp_path: Path, code: str, message: str
) -> None:
    """Only DescribeStacks' ValidationError "Stack with id X does not exist" means absent; other errors (common
    errors: https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/CommonErrors.html) say nothing about
    the stack, and reading them as absent led to create-stack on a stack that exists."""
    # GIVEN describe-stacks answers with an error other than "does not exist"
    stderr = f"An error occurred ({code}) when calling the DescribeStacks operation: {message}"
    extra, log = fake_aws(tmp_path, {"cloudformation describe-stacks": f"echo '{stderr}' >&2; exit 254"})
    stacks_before = stack_count(endpoint)
    # WHEN deploy.sh runs
    proc = run(["--environment", "dev", "--email", "ops@example.com"], base_env(endpoint, **extra))
    # THEN it stops with the reason, and never tried to create (or update) a stack
    assert proc.returncode != 0
    assert f"cannot read stack lambda-auto-repair-main-dev: {stderr}" in proc.stderr
    calls = log.read_text()
    assert "create-stack" not in calls and "update-stack" not in calls
    assert stack_count(endpoint) == stacks_before


ROLLBACK_EVENTS = {
    "StackEvents": [
        {
            "LogicalResourceId": "lambda-auto-repair-main-dev",
            "ResourceType": "AWS::CloudFormation::Stack",
            "ResourceStatus": "DELETE_FAILED",
            "ResourceStatusReason": "The following resource(s) failed to delete: [DeploymentBucket]. ",
        },
        {
            "LogicalResourceId": "DeploymentBucket",
            "ResourceType": "AWS::S3::Bucket",
            "ResourceStatus": "DELETE_FAILED",
            "ResourceStatusReason": "The bucket you tried to delete is not empty",
        },
        {
            "LogicalResourceId": "lambda-auto-repair-main-dev",
            "ResourceType": "AWS::CloudFormation::Stack",
            "ResourceStatus": "DELETE_IN_PROGRESS",
            "ResourceStatusReason": "User Initiated",
        },
        {
            "LogicalResourceId": "KmsKey",
            "ResourceType": "AWS::KMS::Key",
            "ResourceStatus": "CREATE_FAILED",
            "ResourceStatusReason": "an older failure, not of this delete",
        },
    ]
}


def test_a_failed_delete_of_a_rolled_back_stack_prints_why(endpoint: str, tmp_path: Path) -> None:
    """describe-stack-events carries each resource's ResourceStatusReason:
    https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_StackEvent.html"""
    # GIVEN the main stack in ROLLBACK_COMPLETE whose delete fails on a non-empty bucket
    events = tmp_path / "events.json"
    events.write_text(json.dumps(ROLLBACK_EVENTS))
    extra, log = fake_aws(
        tmp_path,
        {
            "cloudformation describe-stacks": "echo ROLLBACK_COMPLETE; exit 0",
            "cloudformation delete-stack": "exit 0",
            "cloudformation wait": "echo 'Waiter StackDeleteComplete failed: terminal failure state' >&2; exit 255",
            "cloudformation describe-stack-events": f"cat '{events}'; exit 0",
        },
    )
    # WHEN deploy.sh runs
    proc = run(["--environment", "dev", "--email", "ops@example.com"], base_env(endpoint, **extra))
    # THEN it stops, printing the resource that could not be deleted with CloudFormation's reason
    assert proc.returncode != 0
    assert (
        "DeploymentBucket (AWS::S3::Bucket) DELETE_FAILED: The bucket you tried to delete is not empty"
        in proc.stderr
    )
    assert "an older failure" not in proc.stderr
    assert "lambda-auto-repair-main-dev (ROLLBACK_COMPLETE) could not be deleted" in proc.stderr
    assert "create-stack" not in log.read_text()


def test_knowledge_upload_compares_content_not_size(own_endpoint: str, tmp_path: Path) -> None:
    """`aws s3 sync` compares size and time (--size-only: size alone), so it skips an edit that keeps the size:
    https://docs.aws.amazon.com/cli/latest/reference/s3/sync.html ; under SSE-KMS an ETag is not the MD5:
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_Object.html"""
    s3 = boto3.client(
        "s3",
        endpoint_url=own_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket="kb-docs")
    docs = tmp_path / "knowledge"
    docs.mkdir()
    doc = docs / "rb-a.json"
    (docs / "notes.txt").write_text("not a knowledge document")

    def upload() -> str:
        script = (
            f"SCRIPT_NAME=t; source '{REPO / 'scripts' / 'common.sh'}'; source '{REPO / 'scripts' / 'uploads.sh'}';"
            f" upload_changed_files '{docs}' kb-docs knowledge/ '*.json'"
        )
        proc = subprocess.run(
            ["bash", "-c", script], env=base_env(own_endpoint), capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    # GIVEN a document uploaded once
    doc.write_text('{"memory": 512}')
    assert upload() == "1 1"
    # WHEN it is edited to the same size, with a file time older than the upload (a checkout, a restore)
    doc.write_text('{"memory": 768}')
    os.utime(doc, (1_000_000_000, 1_000_000_000))
    # THEN the edit is uploaded, and a run with nothing changed uploads nothing
    assert upload() == "1 1"
    assert s3.get_object(Bucket="kb-docs", Key="knowledge/rb-a.json")["Body"].read() == b'{"memory": 768}'
    assert upload() == "0 1"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="kb-docs", Prefix="knowledge/")["Contents"]] == [
        "knowledge/rb-a.json"]
    # AND the hashes live in a manifest outside the uploaded prefix
    manifest = json.loads(s3.get_object(Bucket="kb-docs", Key="deploy-manifests/knowledge/sha256.json")["Body"].read())
    assert list(manifest) == ["knowledge/rb-a.json"] and len(manifest["knowledge/rb-a.json"]["sha256"]) == 64
    # WHEN the object is changed outside deploy.sh (same size), or deleted, THEN the next run uploads it again
    s3.put_object(Bucket="kb-docs", Key="knowledge/rb-a.json", Body=b'{"memory": 999}')
    assert upload() == "1 1"
    assert s3.get_object(Bucket="kb-docs", Key="knowledge/rb-a.json")["Body"].read() == b'{"memory": 768}'
    s3.delete_object(Bucket="kb-docs", Key="knowledge/rb-a.json")
    assert upload() == "1 1"
    # AND an unreadable manifest means "upload", never "skip"
    s3.put_object(Bucket="kb-docs", Key="deploy-manifests/knowledge/sha256.json", Body=b"not json")
    assert upload() == "1 1" and upload() == "0 1"
