#!/usr/bin/env bash
# Deploys Lambda Auto-Repair: main stack -> code package -> functions stack -> monitoring stack.
# See docs/DEPLOYMENT.md and ./deploy.sh --help.
set -euo pipefail

SCRIPT_NAME="$(basename "$0")"
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD_DIR="${ROOT_DIR}/.build"
readonly MAX_TEMPLATE_BODY_BYTES=51200
readonly DEFAULT_LOCAL_EMAIL="local-ops@example.com"

usage() {
  cat <<EOF
Usage: ${SCRIPT_NAME} --environment <dev|staging|prod|local> --email <address> [options]

Deploys (creates or updates) the three Lambda Auto-Repair stacks in order:
  lambda-auto-repair-main-<env> -> code package upload -> lambda-auto-repair-functions-<env>
  -> lambda-auto-repair-monitoring-<env>
Parameters come from parameters/<env>.json; each stack receives only the keys its template declares;
command-line flags override the file.

Options:
  -e, --environment ENV       dev, staging, prod or local (default with --local: local)
  -m, --email ADDRESS         e-mail address subscribed to the notification topic
                              (required, except with --local, --destroy or --package-only)
      --enable-approval       require human approval before repairs (EnableApprovalWorkflow=true)
      --knowledge-base-id ID  Bedrock knowledge base to use; starts an ingestion job after the upload
  -r, --region REGION         AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, profile, us-east-1)
  -p, --profile PROFILE       AWS CLI profile (default: AWS_PROFILE)
      --dry-run               validate all templates (cfn-lint, validate-template) and show what would
                              be deployed; creates, updates and uploads nothing
      --local                 deploy into the local cloud (http://127.0.0.1:\${AUTO_REPAIR_LOCAL_PORT:-4566},
                              fake credentials), starting it with .venv/bin/auto-repair local up if needed
      --package-only          build and upload the code package (code/auto-repair-<sha256>.zip and
                              code/auto-repair-latest.zip) to the main stack's bucket, nothing else
      --destroy               delete the deployment in reverse order (monitoring, functions, main),
                              emptying the buckets the main stack created (prod asks for
                              confirmation when run from a terminal)
  -h, --help                  show this help

Environment: AWS_PROFILE, AWS_REGION / AWS_DEFAULT_REGION and AWS_ENDPOINT_URL are honoured;
PYTHON selects the Python used for packaging (default .venv/bin/python, then python3).

Examples:
  ${SCRIPT_NAME} --environment dev --email dev-team@example.com
  ${SCRIPT_NAME} --environment prod --email ops-team@example.com --enable-approval --region us-west-2
  ${SCRIPT_NAME} --environment dev --email test@example.com --dry-run
  ${SCRIPT_NAME} --local
  ${SCRIPT_NAME} --environment dev --destroy
EOF
}

# ---------------------------------------------------------------------------------------------- output
die() {
  echo "${SCRIPT_NAME}: error: $*" >&2
  exit 1
}
step() { echo "==> $*"; }
info() { echo "    $*"; }
warn() { echo "${SCRIPT_NAME}: warning: $*" >&2; }

# ---------------------------------------------------------------------------------------------- arguments
ENVIRONMENT=""
EMAIL=""
ENABLE_APPROVAL=""
KNOWLEDGE_BASE_ID=""
REGION=""
PROFILE=""
DRY_RUN=false
LOCAL=false
MODE="deploy"

need_value() {
  if [[ $# -lt 2 || -z "$2" || "$2" == --* ]]; then
    die "option $1 requires a value (see --help)"
  fi
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -e | --environment) need_value "$@"; ENVIRONMENT="$2"; shift 2 ;;
    --environment=*) ENVIRONMENT="${1#*=}"; shift ;;
    -m | --email) need_value "$@"; EMAIL="$2"; shift 2 ;;
    --email=*) EMAIL="${1#*=}"; shift ;;
    --enable-approval) ENABLE_APPROVAL=true; shift ;;
    --knowledge-base-id) need_value "$@"; KNOWLEDGE_BASE_ID="$2"; shift 2 ;;
    --knowledge-base-id=*) KNOWLEDGE_BASE_ID="${1#*=}"; shift ;;
    -r | --region) need_value "$@"; REGION="$2"; shift 2 ;;
    --region=*) REGION="${1#*=}"; shift ;;
    -p | --profile) need_value "$@"; PROFILE="$2"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --dry-run) DRY_RUN=true; shift ;;
    --local) LOCAL=true; shift ;;
    --package-only) MODE="package"; shift ;;
    --destroy) MODE="destroy"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

# ---------------------------------------------------------------------------------------------- validation
# shellcheck source=scripts/aws-access.sh
source "${ROOT_DIR}/scripts/aws-access.sh"
check_environment

if [[ "${MODE}" == "deploy" ]]; then
  if [[ -z "${EMAIL}" && "${LOCAL}" == true ]]; then
    EMAIL="${DEFAULT_LOCAL_EMAIL}"
  fi
  [[ -n "${EMAIL}" ]] || die "--email is required (the address notified of repairs)"
fi
if [[ -n "${EMAIL}" ]] && ! [[ "${EMAIL}" =~ ^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$ ]]; then
  die "invalid --email '${EMAIL}' (expected an address such as ops-team@example.com)"
fi
if [[ -n "${KNOWLEDGE_BASE_ID}" ]] && ! [[ "${KNOWLEDGE_BASE_ID}" =~ ^[A-Za-z0-9-]{1,64}$ ]]; then
  die "invalid --knowledge-base-id '${KNOWLEDGE_BASE_ID}' (letters, digits and '-')"
fi
if [[ -n "${REGION}" ]] && ! [[ "${REGION}" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]]; then
  die "invalid --region '${REGION}' (expected a region such as us-east-1)"
fi
if [[ "${DRY_RUN}" == true && "${MODE}" != "deploy" ]]; then
  die "--dry-run cannot be combined with --destroy or --package-only"
fi

PARAMETER_FILE="${ROOT_DIR}/parameters/${ENVIRONMENT}.json"
MAIN_TEMPLATE="${ROOT_DIR}/lambda-auto-repair-main.yaml"
FUNCTIONS_TEMPLATE="${ROOT_DIR}/lambda-auto-repair-functions.yaml"
MONITORING_TEMPLATE="${ROOT_DIR}/lambda-auto-repair-monitoring.yaml"
MAIN_STACK="lambda-auto-repair-main-${ENVIRONMENT}"
FUNCTIONS_STACK="lambda-auto-repair-functions-${ENVIRONMENT}"
MONITORING_STACK="lambda-auto-repair-monitoring-${ENVIRONMENT}"

# ---------------------------------------------------------------------------------------------- tools
command -v aws >/dev/null 2>&1 || die "the AWS CLI ('aws') is not installed or not on PATH"
command -v jq >/dev/null 2>&1 || die "'jq' is not installed or not on PATH"
if [[ -n "${PYTHON:-}" ]]; then
  PY="${PYTHON}"
elif [[ -x "${ROOT_DIR}/.venv/bin/python" ]]; then
  PY="${ROOT_DIR}/.venv/bin/python"
else
  PY="python3"
fi
command -v "${PY}" >/dev/null 2>&1 || die "Python ('${PY}') is not installed; set PYTHON to a Python 3 interpreter"

if [[ "${MODE}" == "deploy" ]]; then
  for template in "${MAIN_TEMPLATE}" "${FUNCTIONS_TEMPLATE}" "${MONITORING_TEMPLATE}"; do
    [[ -f "${template}" ]] || die "template not found: ${template}"
  done
  [[ -f "${PARAMETER_FILE}" ]] || die "parameter file not found: ${PARAMETER_FILE}"
  jq -e 'type == "object"' "${PARAMETER_FILE}" >/dev/null 2>&1 ||
    die "parameter file ${PARAMETER_FILE} is not a JSON object of {\"Key\": value}"
fi

# ---------------------------------------------------------------------------------------------- AWS access
configure_aws_access

local_cloud_reachable() {
  aws sts get-caller-identity --cli-connect-timeout 2 --cli-read-timeout 5 >/dev/null 2>&1
}

if [[ "${LOCAL}" == true ]] && ! local_cloud_reachable; then
  step "Starting the local cloud on ${AWS_ENDPOINT_URL}"
  [[ -x "${ROOT_DIR}/.venv/bin/auto-repair" ]] ||
    die "local cloud not reachable at ${AWS_ENDPOINT_URL} and ${ROOT_DIR}/.venv/bin/auto-repair is missing"
  "${ROOT_DIR}/.venv/bin/auto-repair" local up >/dev/null ||
    die "could not start the local cloud ('.venv/bin/auto-repair local up' failed)"
  for _ in $(seq 1 60); do
    local_cloud_reachable && break
    sleep 0.5
  done
  local_cloud_reachable || die "local cloud did not become reachable at ${AWS_ENDPOINT_URL}"
fi

if ! IDENTITY="$(aws sts get-caller-identity --output json 2>&1)"; then
  die "AWS credentials are missing or invalid ($(echo "${IDENTITY}" | grep -v '^$' | tail -n 1))"
fi
ACCOUNT_ID="$(echo "${IDENTITY}" | jq -r '.Account')"
IS_LOCAL=false
if [[ "${LOCAL}" == true || "${AWS_ENDPOINT_URL:-}" =~ ^https?://(127\.0\.0\.1|localhost)[:/] ]]; then
  IS_LOCAL=true
fi

# ---------------------------------------------------------------------------------------------- helpers
# The parameter keys a template declares (one per line). Works for our YAML (short-form tags) and JSON.
declared_parameters() {
  "${PY}" - "$1" <<'PYEOF'
import json, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
try:
    keys = list(json.loads(text).get("Parameters", {}))
except ValueError:
    keys, inside = [], False
    for line in text.splitlines():
        if re.match(r"^Parameters:\s*(#.*)?$", line):
            inside = True
            continue
        if inside and re.match(r"^[^\s#]", line):
            break
        match = re.match(r"^  ([A-Za-z0-9]+):\s*(#.*)?$", line) if inside else None
        if match:
            keys.append(match.group(1))
print("\n".join(keys))
PYEOF
}

# The parameters of a template as a CloudFormation JSON list: for each declared key, the override if one
# is given (KEY=VALUE arguments), else the value from the parameter file, else nothing (template default).
stack_parameters() {
  local template="$1"
  shift
  local overrides_json='{}' pair
  for pair in "$@"; do
    overrides_json="$(jq -c --arg k "${pair%%=*}" --arg v "${pair#*=}" '. + {($k): $v}' <<<"${overrides_json}")"
  done
  declared_parameters "${template}" | jq -R -s -c --argjson o "${overrides_json}" --slurpfile file "${PARAMETER_FILE}" '
    ($file[0]) as $f
    | [split("\n")[] | select(length > 0) as $k
       | if ($o | has($k)) then {ParameterKey: $k, ParameterValue: $o[$k]}
         elif ($f | has($k)) then {ParameterKey: $k, ParameterValue: ($f[$k] | if type == "string" then . else tojson end)}
         else empty end]'
}

# First 16 hex digits of the SHA-256 of a file ("-": standard input).
sha256_of() {
  "${PY}" -c 'import hashlib, sys
data = sys.stdin.buffer.read() if sys.argv[1] == "-" else open(sys.argv[1], "rb").read()
print(hashlib.sha256(data).hexdigest()[:16])' "$1"
}

stack_status() {
  local status
  status="$(aws cloudformation describe-stacks --stack-name "$1" --query 'Stacks[0].StackStatus' \
    --output text 2>/dev/null || echo "DOES_NOT_EXIST")"
  if [[ "${status}" == "DELETE_COMPLETE" ]]; then
    status="DOES_NOT_EXIST"
  fi
  echo "${status}"
}

stack_output() {
  aws cloudformation describe-stacks --stack-name "$1" \
    --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue" --output text 2>/dev/null || true
}

# Prints the failed resources of the stack's most recent operation with their reasons.
print_stack_failures() {
  local stack="$1"
  echo "Stack ${stack} failed; failing resources:" >&2
  aws cloudformation describe-stack-events --stack-name "${stack}" --output json 2>/dev/null |
    jq -r --arg s "${stack}" '
      .StackEvents as $e
      | ([$e | to_entries[] | select(.value.LogicalResourceId == $s and (.value.ResourceStatus
          | test("^(CREATE|UPDATE|DELETE|IMPORT)_IN_PROGRESS$")))] | (.[0].key // ($e | length))) as $start
      | $e[0:($start + 1)][]
      | select(.ResourceStatus | test("FAILED"))
      | "  \(.LogicalResourceId) (\(.ResourceType)) \(.ResourceStatus): \(.ResourceStatusReason // "no reason given")"' >&2 ||
    echo "  (could not read the stack events)" >&2
}

# Creates or updates a stack; "no updates" is success. Args: stack template parameters-json
deploy_stack() {
  local stack="$1" template="$2"
  shift 2
  local params_json="${1:-[]}" template_args
  local status output operation
  status="$(stack_status "${stack}")"
  if [[ "${status}" == "ROLLBACK_COMPLETE" ]]; then
    step "Stack ${stack} is in ROLLBACK_COMPLETE (a failed first create); deleting it before re-creating"
    aws cloudformation delete-stack --stack-name "${stack}"
    aws cloudformation wait stack-delete-complete --stack-name "${stack}"
    status="DOES_NOT_EXIST"
  fi
  if [[ "${status}" == *_IN_PROGRESS ]]; then
    die "stack ${stack} is busy (${status}); wait for it to finish and re-run"
  fi

  if [[ "$(wc -c <"${template}")" -le "${MAX_TEMPLATE_BODY_BYTES}" || -z "${DEPLOYMENT_BUCKET:-}" ]]; then
    template_args=(--template-body "file://${template}")
  else
    local template_key
    template_key="templates/$(basename "${template}" .yaml)-$(sha256_of "${template}").yaml"
    aws s3 cp --only-show-errors "${template}" "s3://${DEPLOYMENT_BUCKET}/${template_key}"
    template_args=(--template-url "https://${DEPLOYMENT_BUCKET}.s3.${REGION}.amazonaws.com/${template_key}")
  fi

  local -a common=(--stack-name "${stack}" "${template_args[@]}" --capabilities CAPABILITY_NAMED_IAM
    --tags "Key=Project,Value=lambda-auto-repair" "Key=Environment,Value=${ENVIRONMENT}")
  if [[ "$(jq 'length' <<<"${params_json}")" -gt 0 ]]; then
    common+=(--parameters "${params_json}")
  fi

  if [[ "${status}" == "DOES_NOT_EXIST" ]]; then
    operation="create"
    step "Creating stack ${stack}"
    if ! output="$(aws cloudformation create-stack "${common[@]}" --output text 2>&1)"; then
      echo "${output}" >&2
      if [[ "$(stack_status "${stack}")" != "DOES_NOT_EXIST" ]]; then
        print_stack_failures "${stack}"
      fi
      die "could not create stack ${stack}"
    fi
  else
    operation="update"
    step "Updating stack ${stack} (currently ${status})"
    if ! output="$(aws cloudformation update-stack "${common[@]}" --output text 2>&1)"; then
      if [[ "${output}" == *"No updates are to be performed"* ]]; then
        info "No changes; ${stack} is up to date"
        return 0
      fi
      echo "${output}" >&2
      die "could not update stack ${stack}"
    fi
  fi
  info "Waiting for ${stack} (${operation}) ..."
  if ! output="$(aws cloudformation wait "stack-${operation}-complete" --stack-name "${stack}" 2>&1)"; then
    print_stack_failures "${stack}"
    die "stack ${stack} did not ${operation} successfully (status $(stack_status "${stack}"))"
  fi
  info "${stack}: $(stack_status "${stack}")"
}

# ---------------------------------------------------------------------------------------------- packaging
lambda_python_version() {
  local version
  version="$(grep -oE 'python3\.[0-9]+' "${FUNCTIONS_TEMPLATE}" 2>/dev/null | head -n 1 | sed 's/^python//' || true)"
  echo "${version:-3.12}"
}

lambda_platform() {
  if grep -qE '^\s*-\s*arm64\s*$' "${FUNCTIONS_TEMPLATE}" 2>/dev/null; then
    echo "manylinux2014_aarch64"
  else
    echo "manylinux2014_x86_64"
  fi
}

# Builds the code package reproducibly; prints "<sha256> <zip path>".
build_package() {
  local requirements="${ROOT_DIR}/requirements-lambda.txt" pyver platform vendor_key vendor_dir
  [[ -d "${ROOT_DIR}/src/auto_repair" ]] || die "source package not found: ${ROOT_DIR}/src/auto_repair"
  mkdir -p "${BUILD_DIR}"
  pyver="$(lambda_python_version)"
  platform="$(lambda_platform)"
  vendor_key="$({ cat "${requirements}" 2>/dev/null || true; echo "${pyver} ${platform}"; } | sha256_of -)"
  vendor_dir="${BUILD_DIR}/vendor-${vendor_key}"
  if [[ ! -d "${vendor_dir}" ]]; then
    if [[ -s "${requirements}" ]] && grep -qvE '^\s*(#|$)' "${requirements}"; then
      echo "    Installing requirements-lambda.txt for python${pyver} (${platform}) into ${vendor_dir}" >&2
      local staging_dir
      staging_dir="$(mktemp -d "${BUILD_DIR}/vendor-tmp.XXXXXX")"
      # --no-deps: requirements-lambda.txt is the complete pinned list (boto3 comes from the Lambda runtime)
      if ! "${PY}" -m pip install --quiet --disable-pip-version-check --no-compile --no-deps \
        --target "${staging_dir}" \
        --platform "${platform}" --implementation cp --python-version "${pyver}" --only-binary=:all: \
        -r "${requirements}" >"${staging_dir}.log" 2>&1; then
        cat "${staging_dir}.log" >&2
        rm -rf "${staging_dir}"
        die "pip could not install requirements-lambda.txt"
      fi
      rm -f "${staging_dir}.log"
      # another deploy may have finished the same cache entry meanwhile; both are identical
      if [[ -d "${vendor_dir}" ]]; then
        rm -rf "${staging_dir}"
      else
        mv "${staging_dir}" "${vendor_dir}"
      fi
    else
      mkdir -p "${vendor_dir}"
    fi
  fi
  "${PY}" - "${ROOT_DIR}/src" "${vendor_dir}" "${BUILD_DIR}" <<'PYEOF'
import hashlib, os, sys, tempfile, zipfile
src_root, vendor_dir, build_dir = sys.argv[1:4]
entries = {}
def collect(base, only=None):
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = os.path.relpath(dirpath, base)
        top = rel_dir.split(os.sep)[0]
        if only and top not in only:
            continue
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in filenames:
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(dirpath, name)
            arcname = os.path.normpath(os.path.relpath(path, base)).replace(os.sep, "/")
            if arcname.startswith("bin/"):
                continue  # console scripts carry the build machine's interpreter path
            entries[arcname] = path
collect(vendor_dir)
collect(src_root, only={"auto_repair"})
fd, tmp = tempfile.mkstemp(prefix="package-", suffix=".zip.tmp", dir=build_dir)
os.close(fd)
with zipfile.ZipFile(tmp, "w") as archive:
    for arcname in sorted(entries):
        info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o100644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        info.create_system = 3
        with open(entries[arcname], "rb") as handle:
            archive.writestr(info, handle.read(), compresslevel=9)
digest = hashlib.sha256(open(tmp, "rb").read()).hexdigest()
final = os.path.join(build_dir, f"auto-repair-{digest}.zip")
os.replace(tmp, final)
print(digest, final)
PYEOF
}

# Uploads the package unless the content-addressed key exists; points code/auto-repair-latest.zip at it.
upload_package() {
  local bucket="$1" sha="$2" zip="$3"
  local key="code/auto-repair-${sha}.zip" latest_sha
  if aws s3api head-object --bucket "${bucket}" --key "${key}" >/dev/null 2>&1; then
    info "Code package ${key} already uploaded"
  else
    info "Uploading ${key} ($(wc -c <"${zip}") bytes)"
    aws s3 cp --only-show-errors --metadata "sha256=${sha}" "${zip}" "s3://${bucket}/${key}"
  fi
  latest_sha="$(aws s3api head-object --bucket "${bucket}" --key "code/auto-repair-latest.zip" \
    --query 'Metadata.sha256' --output text 2>/dev/null || true)"
  if [[ "${latest_sha}" != "${sha}" ]]; then
    info "Updating code/auto-repair-latest.zip"
    aws s3 cp --only-show-errors --metadata "sha256=${sha}" "${zip}" "s3://${bucket}/code/auto-repair-latest.zip"
  fi
}

sync_knowledge() {
  local bucket="$1"
  local -a files=()
  if [[ -d "${ROOT_DIR}/knowledge" ]]; then
    mapfile -t files < <(find "${ROOT_DIR}/knowledge" -maxdepth 1 -type f -name '*.json' | sort)
  fi
  if [[ ${#files[@]} -eq 0 ]]; then
    info "No knowledge/*.json documents to upload"
  else
    info "Syncing ${#files[@]} knowledge document(s) to s3://${bucket}/knowledge/"
    aws s3 sync --only-show-errors --size-only --exclude '*' --include '*.json' \
      "${ROOT_DIR}/knowledge" "s3://${bucket}/knowledge/"
  fi
  if [[ -n "${KNOWLEDGE_BASE_ID}" ]]; then
    if [[ "${IS_LOCAL}" == true ]]; then
      info "Local cloud: skipping the Bedrock ingestion job for ${KNOWLEDGE_BASE_ID}"
      return 0
    fi
    local data_source
    data_source="$(aws bedrock-agent list-data-sources --knowledge-base-id "${KNOWLEDGE_BASE_ID}" \
      --query 'dataSourceSummaries[0].dataSourceId' --output text 2>/dev/null || true)"
    if [[ -z "${data_source}" || "${data_source}" == "None" ]]; then
      warn "knowledge base ${KNOWLEDGE_BASE_ID} has no data source (or is not reachable); ingestion not started"
    elif aws bedrock-agent start-ingestion-job --knowledge-base-id "${KNOWLEDGE_BASE_ID}" \
      --data-source-id "${data_source}" >/dev/null 2>&1; then
      info "Started ingestion job for knowledge base ${KNOWLEDGE_BASE_ID} (data source ${data_source})"
    else
      warn "could not start an ingestion job for knowledge base ${KNOWLEDGE_BASE_ID}"
    fi
  fi
}

# Deletes every object version and delete marker of a bucket.
empty_bucket() {
  local bucket="$1" batch
  aws s3api head-bucket --bucket "${bucket}" >/dev/null 2>&1 || return 0
  info "Emptying s3://${bucket}"
  while :; do
    batch="$(aws s3api list-object-versions --bucket "${bucket}" --max-items 500 --output json |
      jq -c '{Objects: ([(.Versions // [])[], (.DeleteMarkers // [])[]] | map({Key, VersionId})), Quiet: true}')"
    [[ "$(jq '.Objects | length' <<<"${batch}")" -gt 0 ]] || break
    aws s3api delete-objects --bucket "${bucket}" --delete "${batch}" >/dev/null
  done
}

delete_stack() {
  local stack="$1" status
  status="$(stack_status "${stack}")"
  if [[ "${status}" == "DOES_NOT_EXIST" ]]; then
    info "Stack ${stack} does not exist; nothing to delete"
    return 0
  fi
  step "Deleting stack ${stack} (${status})"
  aws cloudformation delete-stack --stack-name "${stack}"
  if ! aws cloudformation wait stack-delete-complete --stack-name "${stack}" 2>/dev/null; then
    print_stack_failures "${stack}"
    die "stack ${stack} could not be deleted"
  fi
  info "${stack} deleted"
}

# ---------------------------------------------------------------------------------------------- modes
step "Lambda Auto-Repair (${ENVIRONMENT}) - account ${ACCOUNT_ID}, region ${REGION}${AWS_ENDPOINT_URL:+, endpoint ${AWS_ENDPOINT_URL}}"

if [[ "${MODE}" == "destroy" ]]; then
  if [[ "${ENVIRONMENT}" == "prod" && -t 0 ]]; then
    read -r -p "Really delete the prod deployment and its data? Type 'prod' to confirm: " answer
    [[ "${answer}" == "prod" ]] || die "not confirmed; nothing deleted"
  fi
  step "Destroying the ${ENVIRONMENT} deployment (monitoring -> functions -> main)"
  delete_stack "${MONITORING_STACK}"
  delete_stack "${FUNCTIONS_STACK}"
  if [[ "$(stack_status "${MAIN_STACK}")" != "DOES_NOT_EXIST" ]]; then
    for output_key in DeploymentBucketName KnowledgeBucketName; do
      bucket="$(stack_output "${MAIN_STACK}" "${output_key}")"
      if [[ -n "${bucket}" && "${bucket}" != "None" ]]; then
        empty_bucket "${bucket}"
      fi
    done
  fi
  delete_stack "${MAIN_STACK}"
  step "Deployment ${ENVIRONMENT} removed"
  exit 0
fi

if [[ "${MODE}" == "package" ]]; then
  DEPLOYMENT_BUCKET="$(stack_output "${MAIN_STACK}" DeploymentBucketName)"
  [[ -n "${DEPLOYMENT_BUCKET}" && "${DEPLOYMENT_BUCKET}" != "None" ]] ||
    die "stack ${MAIN_STACK} not found or has no DeploymentBucketName output; create the main stack first"
  step "Building the code package"
  PACKAGE_INFO="$(build_package)"
  CODE_SHA="${PACKAGE_INFO%% *}"
  upload_package "${DEPLOYMENT_BUCKET}" "${CODE_SHA}" "${PACKAGE_INFO#* }"
  step "Code package ready: s3://${DEPLOYMENT_BUCKET}/code/auto-repair-${CODE_SHA}.zip (also code/auto-repair-latest.zip)"
  exit 0
fi

# Values that override the parameter file (only the keys a template declares are passed to it).
OVERRIDES=("Environment=${ENVIRONMENT}" "NotificationEmail=${EMAIL}" "MainStackName=${MAIN_STACK}")
if [[ "${ENABLE_APPROVAL}" == true ]]; then
  OVERRIDES+=("EnableApprovalWorkflow=true")
fi
if [[ -n "${KNOWLEDGE_BASE_ID}" ]]; then
  OVERRIDES+=("KnowledgeBaseId=${KNOWLEDGE_BASE_ID}")
fi

if [[ "${DRY_RUN}" == true ]]; then
  step "Dry run: validating templates (nothing will be created, updated or uploaded)"
  CFN_LINT=""
  if command -v cfn-lint >/dev/null 2>&1; then
    CFN_LINT="cfn-lint"
  elif [[ -x "${ROOT_DIR}/.venv/bin/cfn-lint" ]]; then
    CFN_LINT="${ROOT_DIR}/.venv/bin/cfn-lint"
  fi
  failed=false
  for template in "${MAIN_TEMPLATE}" "${FUNCTIONS_TEMPLATE}" "${MONITORING_TEMPLATE}"; do
    name="$(basename "${template}")"
    if [[ -n "${CFN_LINT}" ]]; then
      if lint_output="$("${CFN_LINT}" "${template}" 2>&1)"; then
        info "cfn-lint ${name}: ok"
      else
        echo "${lint_output}" >&2
        echo "    cfn-lint ${name}: FAILED" >&2
        failed=true
      fi
    else
      warn "cfn-lint not found; skipping the lint of ${name}"
    fi
    if [[ "$(wc -c <"${template}")" -gt "${MAX_TEMPLATE_BODY_BYTES}" ]]; then
      info "validate-template ${name}: skipped (over ${MAX_TEMPLATE_BODY_BYTES} bytes; CloudFormation validates it from S3 at deploy time)"
    elif validate_output="$(aws cloudformation validate-template --template-body "file://${template}" 2>&1 >/dev/null)"; then
      info "validate-template ${name}: ok"
    else
      echo "${validate_output}" >&2
      echo "    validate-template ${name}: FAILED" >&2
      failed=true
    fi
  done
  [[ "${failed}" == false ]] || die "template validation failed"

  step "Building the code package (locally only)"
  PACKAGE_INFO="$(build_package)"
  CODE_SHA="${PACKAGE_INFO%% *}"
  info "Package .build/${PACKAGE_INFO##*/} would be uploaded as code/auto-repair-${CODE_SHA}.zip"

  for stack_template in "${MAIN_STACK}:${MAIN_TEMPLATE}" "${FUNCTIONS_STACK}:${FUNCTIONS_TEMPLATE}" \
    "${MONITORING_STACK}:${MONITORING_TEMPLATE}"; do
    stack="${stack_template%%:*}"
    template="${stack_template#*:}"
    status="$(stack_status "${stack}")"
    if [[ "${status}" == "DOES_NOT_EXIST" ]]; then
      step "Would create ${stack} from ${template##*/} with parameters:"
    else
      step "Would update ${stack} (${status}) from ${template##*/} with parameters:"
    fi
    stack_parameters "${template}" "${OVERRIDES[@]}" "CodeS3Key=code/auto-repair-${CODE_SHA}.zip" |
      jq -r '.[] | "      \(.ParameterKey) = \(.ParameterValue)"'
  done
  step "Dry run complete; nothing was changed"
  exit 0
fi

# 1. main
deploy_stack "${MAIN_STACK}" "${MAIN_TEMPLATE}" "$(stack_parameters "${MAIN_TEMPLATE}" "${OVERRIDES[@]}")"
DEPLOYMENT_BUCKET="$(stack_output "${MAIN_STACK}" DeploymentBucketName)"
KNOWLEDGE_BUCKET="$(stack_output "${MAIN_STACK}" KnowledgeBucketName)"
[[ -n "${DEPLOYMENT_BUCKET}" && "${DEPLOYMENT_BUCKET}" != "None" ]] ||
  die "stack ${MAIN_STACK} has no DeploymentBucketName output"

# 2. code and knowledge
step "Packaging code"
PACKAGE_INFO="$(build_package)"
CODE_SHA="${PACKAGE_INFO%% *}"
info "Package sha256 ${CODE_SHA}"
upload_package "${DEPLOYMENT_BUCKET}" "${CODE_SHA}" "${PACKAGE_INFO#* }"
if [[ -n "${KNOWLEDGE_BUCKET}" && "${KNOWLEDGE_BUCKET}" != "None" ]]; then
  step "Uploading knowledge documents"
  sync_knowledge "${KNOWLEDGE_BUCKET}"
fi

# 3. functions
deploy_stack "${FUNCTIONS_STACK}" "${FUNCTIONS_TEMPLATE}" \
  "$(stack_parameters "${FUNCTIONS_TEMPLATE}" "${OVERRIDES[@]}" "CodeS3Key=code/auto-repair-${CODE_SHA}.zip")"

# 4. monitoring
deploy_stack "${MONITORING_STACK}" "${MONITORING_TEMPLATE}" \
  "$(stack_parameters "${MONITORING_TEMPLATE}" "${OVERRIDES[@]}" "CodeS3Key=code/auto-repair-${CODE_SHA}.zip")"

VALIDATE_ARGS="--environment ${ENVIRONMENT} --region ${REGION}"
if [[ "${LOCAL}" == true ]]; then
  VALIDATE_ARGS+=" --local"
fi
step "Deployment of ${ENVIRONMENT} complete"
info "Stacks: ${MAIN_STACK}, ${FUNCTIONS_STACK}, ${MONITORING_STACK}"
info "Code:   s3://${DEPLOYMENT_BUCKET}/code/auto-repair-${CODE_SHA}.zip"
info "Check:  ./validate-deployment.sh ${VALIDATE_ARGS}"
