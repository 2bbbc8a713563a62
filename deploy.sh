#!/usr/bin/env bash
# Deploys Lambda Auto-Repair: main stack -> code package -> functions stack -> monitoring stack.
# See docs/DEPLOYMENT.md and ./deploy.sh --help.
set -euo pipefail

SCRIPT_NAME="$(basename "$0")"
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD_DIR="${ROOT_DIR}/.build"
readonly MAX_TEMPLATE_BODY_BYTES=51200
readonly DEFAULT_LOCAL_EMAIL="local-ops@example.com"
readonly MAIN_TEMPLATE="${ROOT_DIR}/lambda-auto-repair-main.yaml"
readonly FUNCTIONS_TEMPLATE="${ROOT_DIR}/lambda-auto-repair-functions.yaml"
readonly MONITORING_TEMPLATE="${ROOT_DIR}/lambda-auto-repair-monitoring.yaml"
readonly MEMBER_TEMPLATE="${ROOT_DIR}/lambda-auto-repair-member.yaml"

# shellcheck source=scripts/common.sh
source "${ROOT_DIR}/scripts/common.sh"
# shellcheck source=scripts/aws-access.sh
source "${ROOT_DIR}/scripts/aws-access.sh"
# shellcheck source=scripts/stacks.sh
source "${ROOT_DIR}/scripts/stacks.sh"
# shellcheck source=scripts/uploads.sh
source "${ROOT_DIR}/scripts/uploads.sh"

usage() {
  cat <<EOF
Usage: ${SCRIPT_NAME} --environment <dev|staging|prod|local> --email <address> [--organization-id <o-...>] [options]
       ${SCRIPT_NAME} --member --environment <env> --central-account <id> --organization-id <o-...> [options]

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
      --bedrock-model-id ID   Bedrock model or inference profile (id or ARN) the diagnosis consults
                              (BedrockModelId; empty = rules only)
      --guardrail-id ID       Bedrock guardrail applied to diagnosis prompts (BedrockGuardrailId)
      --guardrail-version V   its version: DRAFT or a number (BedrockGuardrailVersion, default DRAFT)
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

Organisation mode, member account (docs/DEPLOYMENT.md; many accounts: the StackSet roll-out there):
      --member                deploy lambda-auto-repair-member-<env> into the current account and region
                              (with the member account's credentials): the rule forwarding its Lambda
                              alarm state changes to the central bus, and the role the central workflow
                              assumes; with --destroy, delete that stack; with --dry-run, show it
      --central-account ID    the central deployment's account (12 digits; required with --member)
      --central-region R      the central deployment's region (default: --region)
      --organization-id ID    the organisation (o-...) both accounts belong to (required with --member);
                              without --member: the central stacks' OrganizationId (organisation mode on)
      --roles-region R        the region whose member stack creates the account-wide IAM roles
                              (default: this one; give it when adding a second region of one account)
  -h, --help                  show this help

Environment: AWS_PROFILE, AWS_REGION / AWS_DEFAULT_REGION and AWS_ENDPOINT_URL are honoured;
PYTHON selects the Python used for packaging (default .venv/bin/python, then python3).

Examples:
  ${SCRIPT_NAME} --environment dev --email dev-team@example.com
  ${SCRIPT_NAME} --environment prod --email ops-team@example.com --enable-approval --region us-west-2
  ${SCRIPT_NAME} --environment dev --email test@example.com --dry-run
  ${SCRIPT_NAME} --local
  ${SCRIPT_NAME} --environment prod --email ops-team@example.com --organization-id o-a1b2c3d4e5
  ${SCRIPT_NAME} --environment dev --destroy
  ${SCRIPT_NAME} --member --environment prod --central-account 111122223333 --central-region us-east-1 \\
      --organization-id o-a1b2c3d4e5 --region eu-west-1
EOF
}

# ---------------------------------------------------------------------------------------------- arguments
ENVIRONMENT=""
EMAIL=""
ENABLE_APPROVAL=""
KNOWLEDGE_BASE_ID=""
BEDROCK_MODEL_ID=""
GUARDRAIL_ID=""
GUARDRAIL_VERSION=""
REGION=""
PROFILE=""
DRY_RUN=false
LOCAL=false
MODE="deploy"
# Set by main from the arguments, and by the steps as they learn them.
PARAMETER_FILE=""
MAIN_STACK=""
FUNCTIONS_STACK=""
MONITORING_STACK=""
IS_LOCAL=false
OVERRIDES=()
DEPLOYMENT_BUCKET=""
CODE_SHA=""
CODE_ZIP=""
MEMBER=false
CENTRAL_ACCOUNT=""
CENTRAL_REGION=""
ORGANIZATION_ID=""
ROLES_REGION=""
MEMBER_STACK=""

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -e | --environment) need_value "$@"; ENVIRONMENT="$2"; shift 2 ;;
      --environment=*) ENVIRONMENT="${1#*=}"; shift ;;
      -m | --email) need_value "$@"; EMAIL="$2"; shift 2 ;;
      --email=*) EMAIL="${1#*=}"; shift ;;
      --enable-approval) ENABLE_APPROVAL=true; shift ;;
      --knowledge-base-id) need_value "$@"; KNOWLEDGE_BASE_ID="$2"; shift 2 ;;
      --knowledge-base-id=*) KNOWLEDGE_BASE_ID="${1#*=}"; shift ;;
      --bedrock-model-id) need_value "$@"; BEDROCK_MODEL_ID="$2"; shift 2 ;;
      --bedrock-model-id=*) BEDROCK_MODEL_ID="${1#*=}"; shift ;;
      --guardrail-id) need_value "$@"; GUARDRAIL_ID="$2"; shift 2 ;;
      --guardrail-id=*) GUARDRAIL_ID="${1#*=}"; shift ;;
      --guardrail-version) need_value "$@"; GUARDRAIL_VERSION="$2"; shift 2 ;;
      --guardrail-version=*) GUARDRAIL_VERSION="${1#*=}"; shift ;;
      -r | --region) need_value "$@"; REGION="$2"; shift 2 ;;
      --region=*) REGION="${1#*=}"; shift ;;
      -p | --profile) need_value "$@"; PROFILE="$2"; shift 2 ;;
      --profile=*) PROFILE="${1#*=}"; shift ;;
      --dry-run) DRY_RUN=true; shift ;;
      --local) LOCAL=true; shift ;;
      --package-only) MODE="package"; shift ;;
      --destroy) MODE="destroy"; shift ;;
      --member) MEMBER=true; shift ;;
      --central-account) need_value "$@"; CENTRAL_ACCOUNT="$2"; shift 2 ;;
      --central-account=*) CENTRAL_ACCOUNT="${1#*=}"; shift ;;
      --central-region) need_value "$@"; CENTRAL_REGION="$2"; shift 2 ;;
      --central-region=*) CENTRAL_REGION="${1#*=}"; shift ;;
      --organization-id) need_value "$@"; ORGANIZATION_ID="$2"; shift 2 ;;
      --organization-id=*) ORGANIZATION_ID="${1#*=}"; shift ;;
      --roles-region) need_value "$@"; ROLES_REGION="$2"; shift 2 ;;
      --roles-region=*) ROLES_REGION="${1#*=}"; shift ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown option '$1' (see --help)" ;;
    esac
  done
}

check_args() {
  check_environment
  if [[ "${MEMBER}" == true ]]; then
    check_member_args
    return 0
  fi
  if [[ -n "${CENTRAL_ACCOUNT}${CENTRAL_REGION}${ROLES_REGION}" ]]; then
    die "--central-account, --central-region and --roles-region go with --member (the central stacks take --organization-id or OrganizationId from parameters/${ENVIRONMENT}.json)"
  fi
  check_organization_id
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
  if [[ -n "${BEDROCK_MODEL_ID}" ]] && ! [[ "${BEDROCK_MODEL_ID}" =~ ^[-a-zA-Z0-9.:/_]{1,200}$ ]]; then
    die "invalid --bedrock-model-id '${BEDROCK_MODEL_ID}' (a model or inference-profile id or ARN)"
  fi
  if [[ -n "${GUARDRAIL_ID}" ]] && ! [[ "${GUARDRAIL_ID}" =~ ^[a-zA-Z0-9:/._-]{1,200}$ ]]; then
    die "invalid --guardrail-id '${GUARDRAIL_ID}' (a guardrail id or ARN)"
  fi
  if [[ -n "${GUARDRAIL_VERSION}" ]] && ! [[ "${GUARDRAIL_VERSION}" =~ ^(DRAFT|[1-9][0-9]{0,7})$ ]]; then
    die "invalid --guardrail-version '${GUARDRAIL_VERSION}' (DRAFT or a version number)"
  fi
  check_region
  if [[ "${DRY_RUN}" == true && "${MODE}" != "deploy" ]]; then
    die "--dry-run cannot be combined with --destroy or --package-only"
  fi
}

# The OrganizationId parameter's own pattern (both templates), checked before any AWS call.
check_organization_id() {
  if [[ -n "${ORGANIZATION_ID}" ]] && ! [[ "${ORGANIZATION_ID}" =~ ^o-[a-z0-9]{10,32}$ ]]; then
    die "invalid --organization-id '${ORGANIZATION_ID}' (expected o- and 10-32 lowercase letters or digits)"
  fi
}

# A member stack needs only the central deployment's coordinates; the central stacks' options mean nothing there.
check_member_args() {
  local region_pattern='^[a-z]{2}(-[a-z]+)+-[0-9]$'
  [[ "${MODE}" != "package" ]] || die "--package-only cannot be combined with --member (a member stack has no code)"
  if [[ -n "${EMAIL}${ENABLE_APPROVAL}${KNOWLEDGE_BASE_ID}${BEDROCK_MODEL_ID}${GUARDRAIL_ID}${GUARDRAIL_VERSION}" ]]; then
    die "--email, --enable-approval, --knowledge-base-id and the Bedrock options configure the central stacks, not --member"
  fi
  if [[ "${DRY_RUN}" == true && "${MODE}" != "deploy" ]]; then
    die "--dry-run cannot be combined with --destroy"
  fi
  check_region
  if [[ "${MODE}" == "deploy" ]]; then
    [[ -n "${CENTRAL_ACCOUNT}" ]] || die "--member needs --central-account (the account of the central deployment)"
    [[ -n "${ORGANIZATION_ID}" ]] || die "--member needs --organization-id (the organisation, o-...)"
  fi
  if [[ -n "${CENTRAL_ACCOUNT}" ]] && ! [[ "${CENTRAL_ACCOUNT}" =~ ^[0-9]{12}$ ]]; then
    die "invalid --central-account '${CENTRAL_ACCOUNT}' (expected a 12-digit account id)"
  fi
  check_organization_id
  if [[ -n "${CENTRAL_REGION}" ]] && ! [[ "${CENTRAL_REGION}" =~ ${region_pattern} ]]; then
    die "invalid --central-region '${CENTRAL_REGION}' (expected a region such as us-east-1)"
  fi
  if [[ -n "${ROLES_REGION}" ]] && ! [[ "${ROLES_REGION}" =~ ${region_pattern} ]]; then
    die "invalid --roles-region '${ROLES_REGION}' (expected a region such as us-east-1)"
  fi
}

# ---------------------------------------------------------------------------------------------- tools
PY=""

find_python() {
  if [[ -n "${PYTHON:-}" ]]; then
    PY="${PYTHON}"
  elif [[ -x "${ROOT_DIR}/.venv/bin/python" ]]; then
    PY="${ROOT_DIR}/.venv/bin/python"
  else
    PY="python3"
  fi
  command -v "${PY}" >/dev/null 2>&1 || die "Python ('${PY}') is not installed; set PYTHON to a Python 3 interpreter"
}

# tools/auto_repair_cli/package.py (`auto-repair package`): standard library only, so no .venv is needed.
package_tool() {
  PYTHONPATH="${ROOT_DIR}/tools" "${PY}" -m auto_repair_cli.package "$@"
}

check_deploy_inputs() {
  local template
  for template in "${MAIN_TEMPLATE}" "${FUNCTIONS_TEMPLATE}" "${MONITORING_TEMPLATE}"; do
    [[ -f "${template}" ]] || die "template not found: ${template}"
  done
  [[ -f "${PARAMETER_FILE}" ]] || die "parameter file not found: ${PARAMETER_FILE}"
  jq -e 'type == "object"' "${PARAMETER_FILE}" >/dev/null 2>&1 ||
    die "parameter file ${PARAMETER_FILE} is not a JSON object of {\"Key\": value}"
  check_alarm_period
}

# AWS/Lambda metrics are one-minute metrics: a 10 s or 30 s alarm period behaves as intended only in the local
# cloud, which speeds its metrics up (docs/DEPLOYMENT.md). The templates' Rules refuse it as well.
check_alarm_period() {
  local period
  period="$(jq -r '.AlarmPeriodSeconds // empty' "${PARAMETER_FILE}")"
  if [[ "${ENVIRONMENT}" == "local" || -z "${period}" ]]; then
    return 0
  fi
  if ! [[ "${period}" =~ ^[1-9][0-9]*$ ]] || ((period % 60 != 0)); then
    die "AlarmPeriodSeconds ${period} in ${PARAMETER_FILE##*/}: outside the local environment it must be a multiple of 60 (AWS/Lambda metrics are one-minute metrics; 10 and 30 are a local-only speed-up)"
  fi
}

# ---------------------------------------------------------------------------------------------- AWS access
local_cloud_reachable() {
  aws sts get-caller-identity --cli-connect-timeout 2 --cli-read-timeout 5 >/dev/null 2>&1
}

start_local_cloud_if_needed() {
  if [[ "${LOCAL}" != true ]] || local_cloud_reachable; then
    return 0
  fi
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
}

# ---------------------------------------------------------------------------------------------- parameters
# The parameters of a template as a CloudFormation JSON list: for each declared key, the override if one
# is given (KEY=VALUE arguments), else the value from the parameter file, else nothing (template default).
stack_parameters() {
  local template="$1"
  shift
  package_tool params --template "${template}" --parameter-file "${PARAMETER_FILE}" "$@"
}

# ---------------------------------------------------------------------------------------------- code and knowledge
# Builds the code package reproducibly (sets CODE_SHA and CODE_ZIP); the pip cache lives in .build/.
build_package() {
  local package_info
  package_info="$(package_tool build --root "${ROOT_DIR}" --build-dir "${BUILD_DIR}")" ||
    die "could not build the code package"
  CODE_SHA="${package_info%% *}"
  CODE_ZIP="${package_info#* }"
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

# Bedrock knowledge bases ingest text, not JSON: each knowledge/*.json entry is uploaded as <entryId>.md plus its
# <entryId>.md.metadata.json sidecar (entry id, title, tags), rendered by auto_repair.knowledge.
sync_knowledge() {
  local bucket="$1" counts=""
  local rendered="${BUILD_DIR}/knowledge"
  if compgen -G "${ROOT_DIR}/knowledge/*.json" >/dev/null; then
    rm -rf "${rendered}"
    package_tool knowledge --root "${ROOT_DIR}" --out "${rendered}" >/dev/null ||
      die "could not render the knowledge documents"
    counts="$(upload_changed_files "${rendered}" "${bucket}" "knowledge/" '*.md' '*.md.metadata.json')"
  fi
  if [[ "${counts:-0 0}" == *" 0" ]]; then
    info "No knowledge/*.json documents to upload"
  else
    info "Knowledge: ${counts%% *} of ${counts#* } file(s) changed (Markdown + metadata), uploaded to s3://${bucket}/knowledge/"
  fi
  if [[ -n "${KNOWLEDGE_BASE_ID}" ]]; then
    start_ingestion
  fi
}

# Bedrock re-reads the bucket only when asked; a failure here is a warning, the deployment itself is done.
start_ingestion() {
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

# ---------------------------------------------------------------------------------------------- modes
destroy_deployment() {
  local answer output_key bucket main_status
  if [[ "${ENVIRONMENT}" == "prod" && -t 0 ]]; then
    read -r -p "Really delete the prod deployment and its data? Type 'prod' to confirm: " answer
    [[ "${answer}" == "prod" ]] || die "not confirmed; nothing deleted"
  fi
  step "Destroying the ${ENVIRONMENT} deployment (monitoring -> functions -> main)"
  delete_stack "${MONITORING_STACK}"
  delete_stack "${FUNCTIONS_STACK}"
  main_status="$(stack_status "${MAIN_STACK}")" || exit
  if [[ "${main_status}" != "DOES_NOT_EXIST" ]]; then
    for output_key in DeploymentBucketName KnowledgeBucketName; do
      bucket="$(stack_output "${MAIN_STACK}" "${output_key}")" || exit
      if [[ -n "${bucket}" && "${bucket}" != "None" ]]; then
        empty_bucket "${bucket}"
      fi
    done
  fi
  delete_stack "${MAIN_STACK}"
  step "Deployment ${ENVIRONMENT} removed"
}

package_only() {
  DEPLOYMENT_BUCKET="$(stack_output "${MAIN_STACK}" DeploymentBucketName)" || exit
  [[ -n "${DEPLOYMENT_BUCKET}" && "${DEPLOYMENT_BUCKET}" != "None" ]] ||
    die "stack ${MAIN_STACK} not found or has no DeploymentBucketName output; create the main stack first"
  step "Building the code package"
  build_package
  upload_package "${DEPLOYMENT_BUCKET}" "${CODE_SHA}" "${CODE_ZIP}"
  step "Code package ready: s3://${DEPLOYMENT_BUCKET}/code/auto-repair-${CODE_SHA}.zip (also code/auto-repair-latest.zip)"
}

# cfn-lint from PATH or .venv; empty when neither has it (the dry run then warns and only validates).
find_cfn_lint() {
  if command -v cfn-lint >/dev/null 2>&1; then
    echo "cfn-lint"
  elif [[ -x "${ROOT_DIR}/.venv/bin/cfn-lint" ]]; then
    echo "${ROOT_DIR}/.venv/bin/cfn-lint"
  fi
}

# Lints and validates every template; returns non-zero when any fails (each failure already printed).
validate_templates() {
  local cfn_lint failed=false template name lint_output validate_output
  cfn_lint="$(find_cfn_lint)"
  for template in "${MAIN_TEMPLATE}" "${FUNCTIONS_TEMPLATE}" "${MONITORING_TEMPLATE}"; do
    name="$(basename "${template}")"
    if [[ -n "${cfn_lint}" ]]; then
      if lint_output="$("${cfn_lint}" "${template}" 2>&1)"; then
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
  [[ "${failed}" == false ]]
}

dry_run() {
  local stack_template stack template status parameters
  step "Dry run: validating templates (nothing will be created, updated or uploaded)"
  validate_templates || die "template validation failed"

  step "Building the code package (locally only)"
  build_package
  info "Package .build/${CODE_ZIP##*/} would be uploaded as code/auto-repair-${CODE_SHA}.zip"

  for stack_template in "${MAIN_STACK}:${MAIN_TEMPLATE}" "${FUNCTIONS_STACK}:${FUNCTIONS_TEMPLATE}" \
    "${MONITORING_STACK}:${MONITORING_TEMPLATE}"; do
    stack="${stack_template%%:*}"
    template="${stack_template#*:}"
    status="$(stack_status "${stack}")" || exit
    if [[ "${status}" == "DOES_NOT_EXIST" ]]; then
      step "Would create ${stack} from ${template##*/} with parameters:"
    else
      step "Would update ${stack} (${status}) from ${template##*/} with parameters:"
    fi
    parameters="$(stack_parameters "${template}" "${OVERRIDES[@]}" "CodeS3Key=code/auto-repair-${CODE_SHA}.zip")"
    jq -r '.[] | "      \(.ParameterKey) = \(.ParameterValue)"' <<<"${parameters}"
  done
  step "Dry run complete; nothing was changed"
}

deploy_all() {
  local params knowledge_bucket validate_args code_key
  # 1. main
  params="$(stack_parameters "${MAIN_TEMPLATE}" "${OVERRIDES[@]}")"
  deploy_stack "${MAIN_STACK}" "${MAIN_TEMPLATE}" "${params}"
  DEPLOYMENT_BUCKET="$(stack_output "${MAIN_STACK}" DeploymentBucketName)" || exit
  knowledge_bucket="$(stack_output "${MAIN_STACK}" KnowledgeBucketName)" || exit
  [[ -n "${DEPLOYMENT_BUCKET}" && "${DEPLOYMENT_BUCKET}" != "None" ]] ||
    die "stack ${MAIN_STACK} has no DeploymentBucketName output"

  # 2. code and knowledge
  step "Packaging code"
  build_package
  info "Package sha256 ${CODE_SHA}"
  upload_package "${DEPLOYMENT_BUCKET}" "${CODE_SHA}" "${CODE_ZIP}"
  if [[ -n "${knowledge_bucket}" && "${knowledge_bucket}" != "None" ]]; then
    step "Uploading knowledge documents"
    sync_knowledge "${knowledge_bucket}"
  fi

  # 3. functions, 4. monitoring
  code_key="code/auto-repair-${CODE_SHA}.zip"
  params="$(stack_parameters "${FUNCTIONS_TEMPLATE}" "${OVERRIDES[@]}" "CodeS3Key=${code_key}")"
  deploy_stack "${FUNCTIONS_STACK}" "${FUNCTIONS_TEMPLATE}" "${params}"
  params="$(stack_parameters "${MONITORING_TEMPLATE}" "${OVERRIDES[@]}" "CodeS3Key=${code_key}")"
  deploy_stack "${MONITORING_STACK}" "${MONITORING_TEMPLATE}" "${params}"

  validate_args="--environment ${ENVIRONMENT} --region ${REGION}"
  if [[ "${LOCAL}" == true ]]; then
    validate_args+=" --local"
  fi
  step "Deployment of ${ENVIRONMENT} complete"
  info "Stacks: ${MAIN_STACK}, ${FUNCTIONS_STACK}, ${MONITORING_STACK}"
  info "Code:   s3://${DEPLOYMENT_BUCKET}/${code_key}"
  info "Check:  ./validate-deployment.sh ${validate_args}"
}

# ---------------------------------------------------------------------------------------------- member account
# The organisation the credentials' account belongs to; empty when it cannot be read (not in an organisation, or
# no organizations:DescribeOrganization permission).
caller_organization() {
  aws organizations describe-organization --query 'Organization.Id' --output text 2>/dev/null || true
}

# Pre-flight for --member: the member template, the parameter file, and credentials of a member account of the
# organisation (never the central account: its main stack already has the forwarding rule of the same name).
check_member_account() {
  local account_id="$1" organization
  if [[ "${account_id}" == "${CENTRAL_ACCOUNT}" ]]; then
    die "the credentials belong to the central account ${CENTRAL_ACCOUNT}; run --member with a member account's credentials (the central main stack already forwards its own alarms)"
  fi
  organization="$(caller_organization)"
  if [[ -z "${organization}" || "${organization}" == "None" ]]; then
    warn "could not read the organisation of account ${account_id} (organizations:DescribeOrganization); assuming it is in ${ORGANIZATION_ID}"
  elif [[ "${organization}" != "${ORGANIZATION_ID}" ]]; then
    die "account ${account_id} belongs to organisation ${organization}, not --organization-id ${ORGANIZATION_ID}"
  fi
}

member_overrides() {
  OVERRIDES=("Environment=${ENVIRONMENT}" "CentralAccountId=${CENTRAL_ACCOUNT}"
    "CentralRegion=${CENTRAL_REGION:-${REGION}}" "OrganizationId=${ORGANIZATION_ID}")
  [[ -z "${ROLES_REGION}" ]] || OVERRIDES+=("RolesRegion=${ROLES_REGION}")
}

deploy_member() {
  local params role_arn bus_arn validate_args status
  member_overrides
  params="$(stack_parameters "${MEMBER_TEMPLATE}" "${OVERRIDES[@]}")"
  if [[ "${DRY_RUN}" == true ]]; then
    step "Dry run: validating the member template (nothing will be created or updated)"
    validate_member_template || die "template validation failed"
    status="$(stack_status "${MEMBER_STACK}")" || exit
    if [[ "${status}" == "DOES_NOT_EXIST" ]]; then
      step "Would create ${MEMBER_STACK} from ${MEMBER_TEMPLATE##*/} with parameters:"
    else
      step "Would update ${MEMBER_STACK} (${status}) from ${MEMBER_TEMPLATE##*/} with parameters:"
    fi
    jq -r '.[] | "      \(.ParameterKey) = \(.ParameterValue)"' <<<"${params}"
    step "Dry run complete; nothing was changed"
    return 0
  fi
  deploy_stack "${MEMBER_STACK}" "${MEMBER_TEMPLATE}" "${params}"
  role_arn="$(stack_output "${MEMBER_STACK}" MemberRoleArn)" || exit
  bus_arn="$(stack_output "${MEMBER_STACK}" CentralEventBusArn)" || exit
  validate_args="--member --environment ${ENVIRONMENT} --region ${REGION}"
  if [[ "${LOCAL}" == true ]]; then
    validate_args+=" --local"
  fi
  step "Member stack of ${ENVIRONMENT} complete"
  info "Stack:       ${MEMBER_STACK}"
  info "Forwards to: ${bus_arn}"
  info "Repair role: ${role_arn}"
  info "Central:     OrganizationId=${ORGANIZATION_ID} in the functions stack (parameters/${ENVIRONMENT}.json or deploy.sh --organization-id)"
  info "Check:       ./validate-deployment.sh ${validate_args}"
}

validate_member_template() {
  local cfn_lint name output
  cfn_lint="$(find_cfn_lint)"
  name="$(basename "${MEMBER_TEMPLATE}")"
  if [[ -z "${cfn_lint}" ]]; then
    warn "cfn-lint not found; skipping the lint of ${name}"
  elif output="$("${cfn_lint}" "${MEMBER_TEMPLATE}" 2>&1)"; then
    info "cfn-lint ${name}: ok"
  else
    echo "${output}" >&2
    echo "    cfn-lint ${name}: FAILED" >&2
    return 1
  fi
  if output="$(aws cloudformation validate-template --template-body "file://${MEMBER_TEMPLATE}" 2>&1 >/dev/null)"; then
    info "validate-template ${name}: ok"
  else
    echo "${output}" >&2
    echo "    validate-template ${name}: FAILED" >&2
    return 1
  fi
}

member_main() {
  local account_id
  MEMBER_STACK="lambda-auto-repair-member-${ENVIRONMENT}"
  if [[ "${MODE}" == "deploy" ]]; then
    [[ -f "${MEMBER_TEMPLATE}" ]] || die "template not found: ${MEMBER_TEMPLATE}"
    [[ -f "${PARAMETER_FILE}" ]] || die "parameter file not found: ${PARAMETER_FILE}"
    jq -e 'type == "object"' "${PARAMETER_FILE}" >/dev/null 2>&1 ||
      die "parameter file ${PARAMETER_FILE} is not a JSON object of {\"Key\": value}"
  fi
  configure_aws_access
  start_local_cloud_if_needed
  account_id="$(caller_account)" || exit
  step "Lambda Auto-Repair (${ENVIRONMENT}) member account ${account_id}, region ${REGION}${AWS_ENDPOINT_URL:+, endpoint ${AWS_ENDPOINT_URL}}"
  if [[ "${MODE}" == "destroy" ]]; then
    delete_stack "${MEMBER_STACK}"
    step "Member stack ${MEMBER_STACK} removed"
    return 0
  fi
  check_member_account "${account_id}"
  deploy_member
}

# ---------------------------------------------------------------------------------------------- main
main() {
  parse_args "$@"
  check_args

  PARAMETER_FILE="${ROOT_DIR}/parameters/${ENVIRONMENT}.json"
  if [[ "${MEMBER}" == true ]]; then
    require_aws_cli_and_jq
    find_python
    member_main
    return 0
  fi
  MAIN_STACK="lambda-auto-repair-main-${ENVIRONMENT}"
  FUNCTIONS_STACK="lambda-auto-repair-functions-${ENVIRONMENT}"
  MONITORING_STACK="lambda-auto-repair-monitoring-${ENVIRONMENT}"

  require_aws_cli_and_jq
  find_python
  if [[ "${MODE}" == "deploy" ]]; then
    check_deploy_inputs
  fi

  configure_aws_access
  start_local_cloud_if_needed
  local account_id
  account_id="$(caller_account)" || exit
  if [[ "${LOCAL}" == true || "${AWS_ENDPOINT_URL:-}" =~ ^https?://(127\.0\.0\.1|localhost)[:/] ]]; then
    IS_LOCAL=true
  fi

  step "Lambda Auto-Repair (${ENVIRONMENT}) - account ${account_id}, region ${REGION}${AWS_ENDPOINT_URL:+, endpoint ${AWS_ENDPOINT_URL}}"
  case "${MODE}" in
    destroy) destroy_deployment; return 0 ;;
    package) package_only; return 0 ;;
  esac

  # Values that override the parameter file (only the keys a template declares are passed to it).
  OVERRIDES=("Environment=${ENVIRONMENT}" "NotificationEmail=${EMAIL}" "MainStackName=${MAIN_STACK}")
  if [[ "${ENABLE_APPROVAL}" == true ]]; then
    OVERRIDES+=("EnableApprovalWorkflow=true")
  fi
  if [[ -n "${KNOWLEDGE_BASE_ID}" ]]; then
    OVERRIDES+=("KnowledgeBaseId=${KNOWLEDGE_BASE_ID}")
  fi
  [[ -z "${BEDROCK_MODEL_ID}" ]] || OVERRIDES+=("BedrockModelId=${BEDROCK_MODEL_ID}")
  [[ -z "${GUARDRAIL_ID}" ]] || OVERRIDES+=("BedrockGuardrailId=${GUARDRAIL_ID}")
  [[ -z "${GUARDRAIL_VERSION}" ]] || OVERRIDES+=("BedrockGuardrailVersion=${GUARDRAIL_VERSION}")
  [[ -z "${ORGANIZATION_ID}" ]] || OVERRIDES+=("OrganizationId=${ORGANIZATION_ID}")

  if [[ "${DRY_RUN}" == true ]]; then
    dry_run
  else
    deploy_all
  fi
}

main "$@"
