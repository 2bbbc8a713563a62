#!/usr/bin/env bash
# Checks that a Lambda Auto-Repair deployment is healthy. Exit 0 only when every check passes.
# See docs/DEPLOYMENT.md and ./validate-deployment.sh --help.
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

SCRIPT_NAME="$(basename "$0")"
ROLES=(parse-alarm collect diagnose execute-repair verify notify request-approval handle-failure coordinator)
ALARMS=(failed-executions handler-errors dlq-depth sns-delivery-failures)

usage() {
  cat <<EOF
Usage: ${SCRIPT_NAME} --environment <dev|staging|prod|local> [--region REGION] [--profile PROFILE] [--local]

Checks the deployment's stacks, Lambda functions, state machine, event bus and rules, DynamoDB tables,
notification topic and subscription, alarms and dashboard. Prints a line per check; for each problem
"❌ <what> <why>". Exits 0 only when everything is healthy.

Options:
  -e, --environment ENV   dev, staging, prod or local (default with --local: local)
  -r, --region REGION     AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, profile, us-east-1)
  -p, --profile PROFILE   AWS CLI profile (default: AWS_PROFILE)
      --local             check the local cloud (http://127.0.0.1:\${AUTO_REPAIR_LOCAL_PORT:-4566})
  -h, --help              show this help
EOF
}

die() {
  echo "${SCRIPT_NAME}: error: $*" >&2
  exit 2
}

ENVIRONMENT=""
REGION=""
PROFILE=""
LOCAL=false

need_value() {
  if [[ $# -lt 2 || -z "$2" || "$2" == --* ]]; then
    die "option $1 requires a value (see --help)"
  fi
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -e | --environment) need_value "$@"; ENVIRONMENT="$2"; shift 2 ;;
    --environment=*) ENVIRONMENT="${1#*=}"; shift ;;
    -r | --region) need_value "$@"; REGION="$2"; shift 2 ;;
    --region=*) REGION="${1#*=}"; shift ;;
    -p | --profile) need_value "$@"; PROFILE="$2"; shift 2 ;;
    --profile=*) PROFILE="${1#*=}"; shift ;;
    --local) LOCAL=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

# shellcheck source=scripts/aws-access.sh
source "${ROOT_DIR}/scripts/aws-access.sh"
check_environment
if [[ -n "${REGION}" ]] && ! [[ "${REGION}" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]]; then
  die "invalid --region '${REGION}' (expected a region such as us-east-1)"
fi

command -v aws >/dev/null 2>&1 || die "the AWS CLI ('aws') is not installed or not on PATH"
command -v jq >/dev/null 2>&1 || die "'jq' is not installed or not on PATH"

configure_aws_access

if ! IDENTITY_ERROR="$(aws sts get-caller-identity 2>&1 >/dev/null)"; then
  die "AWS credentials are missing or invalid ($(echo "${IDENTITY_ERROR}" | grep -v '^$' | tail -n 1))"
fi

PROBLEMS=0
ok() { echo "  ✅ $*"; }
problem() {
  echo "  ❌ $*"
  PROBLEMS=$((PROBLEMS + 1))
}
note() { echo "  ⚠️  $*"; }
# The last line of an AWS CLI error, for "why".
reason_of() { echo "$1" | grep -v '^$' | tail -n 1 | sed -E 's/^An error occurred \(([^)]*)\) when calling the [A-Za-z]+ operation: /\1: /'; }

MAIN_STACK="lambda-auto-repair-main-${ENVIRONMENT}"
FUNCTIONS_STACK="lambda-auto-repair-functions-${ENVIRONMENT}"
MONITORING_STACK="lambda-auto-repair-monitoring-${ENVIRONMENT}"

echo "=== Lambda Auto-Repair System Validation ==="
echo "Environment: ${ENVIRONMENT}"
echo "Region: ${REGION}"
echo "============================================="

# ---------------------------------------------------------------------------------------------- stacks
for stack in "${MAIN_STACK}" "${FUNCTIONS_STACK}" "${MONITORING_STACK}"; do
  echo "Checking stack: ${stack}"
  if ! status="$(aws cloudformation describe-stacks --stack-name "${stack}" \
    --query 'Stacks[0].StackStatus' --output text 2>&1)"; then
    echo "  Status: NOT_FOUND"
    problem "Stack ${stack} not found ($(reason_of "${status}"))"
    continue
  fi
  echo "  Status: ${status}"
  case "${status}" in
    CREATE_COMPLETE | UPDATE_COMPLETE | IMPORT_COMPLETE) ok "Stack is healthy" ;;
    *_IN_PROGRESS) problem "Stack ${stack} is busy (${status})" ;;
    *) problem "Stack ${stack} is not healthy (${status})" ;;
  esac
done

# ---------------------------------------------------------------------------------------------- functions
echo "Validating Lambda functions..."
function_problems=0
for role in "${ROLES[@]}"; do
  name="lambda-auto-repair-${role}-${ENVIRONMENT}"
  if ! config="$(aws lambda get-function-configuration --function-name "${name}" --output json 2>&1)"; then
    problem "Function ${name} not found ($(reason_of "${config}"))"
    function_problems=$((function_problems + 1))
    continue
  fi
  state="$(jq -r '.State // "Active"' <<<"${config}")"
  update_status="$(jq -r '.LastUpdateStatus // "Successful"' <<<"${config}")"
  if [[ "${state}" != "Active" ]]; then
    problem "Function ${name} is ${state} ($(jq -r '.StateReason // "no reason given"' <<<"${config}"))"
    function_problems=$((function_problems + 1))
  elif [[ "${update_status}" == "Failed" ]]; then
    problem "Function ${name} last update failed ($(jq -r '.LastUpdateStatusReason // "no reason given"' <<<"${config}"))"
    function_problems=$((function_problems + 1))
  fi
done
if [[ "${function_problems}" -eq 0 ]]; then
  ok "All functions are active"
fi

# ---------------------------------------------------------------------------------------------- state machine
echo "Validating Step Functions..."
STATE_MACHINE="lambda-auto-repair-workflow-${ENVIRONMENT}"
if ! sm_arn="$(aws stepfunctions list-state-machines --output json 2>&1)"; then
  problem "State machine ${STATE_MACHINE} could not be listed ($(reason_of "${sm_arn}"))"
else
  sm_arn="$(jq -r --arg n "${STATE_MACHINE}" '[.stateMachines[] | select(.name == $n) | .stateMachineArn][0] // ""' <<<"${sm_arn}")"
  if [[ -z "${sm_arn}" ]]; then
    problem "State machine ${STATE_MACHINE} not found"
  elif ! sm_status="$(aws stepfunctions describe-state-machine --state-machine-arn "${sm_arn}" \
    --query 'status' --output text 2>&1)"; then
    problem "State machine ${STATE_MACHINE} could not be described ($(reason_of "${sm_status}"))"
  elif [[ "${sm_status}" != "ACTIVE" && "${sm_status}" != "None" ]]; then
    problem "State machine ${STATE_MACHINE} is ${sm_status}"
  else
    ok "State machine is active"
  fi
fi

# ---------------------------------------------------------------------------------------------- events
echo "Validating EventBridge..."
BUS="lambda-auto-repair-bus-${ENVIRONMENT}"
FORWARD_RULE="lambda-auto-repair-forward-alarms-${ENVIRONMENT}"
if ! bus_output="$(aws events describe-event-bus --name "${BUS}" --output json 2>&1)"; then
  problem "Event bus ${BUS} not found ($(reason_of "${bus_output}"))"
else
  ok "Event bus ${BUS} exists"
  if ! rules="$(aws events list-rules --event-bus-name "${BUS}" --output json 2>&1)"; then
    problem "Rules of event bus ${BUS} could not be listed ($(reason_of "${rules}"))"
  elif [[ "$(jq '.Rules | length' <<<"${rules}")" -eq 0 ]]; then
    problem "Event bus ${BUS} has no rules (the functions stack adds them)"
  else
    bus_rule_problems=0
    while IFS=$'\t' read -r rule_name rule_state; do
      if [[ "${rule_state}" != "ENABLED" ]]; then
        problem "Rule ${rule_name} on ${BUS} is ${rule_state}"
        bus_rule_problems=$((bus_rule_problems + 1))
        continue
      fi
      targets="$(aws events list-targets-by-rule --rule "${rule_name}" --event-bus-name "${BUS}" \
        --query 'length(Targets)' --output text 2>/dev/null || echo 0)"
      if [[ "${targets}" == "0" ]]; then
        problem "Rule ${rule_name} on ${BUS} has no targets"
        bus_rule_problems=$((bus_rule_problems + 1))
      fi
    done < <(jq -r '.Rules[] | [.Name, .State] | @tsv' <<<"${rules}")
    if [[ "${bus_rule_problems}" -eq 0 ]]; then
      ok "$(jq '.Rules | length' <<<"${rules}") rule(s) on ${BUS} are enabled with targets"
    fi
  fi
fi
if ! forward="$(aws events describe-rule --name "${FORWARD_RULE}" --output json 2>&1)"; then
  problem "Forwarding rule ${FORWARD_RULE} not found on the default bus ($(reason_of "${forward}"))"
else
  forward_state="$(jq -r '.State' <<<"${forward}")"
  forward_target="$(aws events list-targets-by-rule --rule "${FORWARD_RULE}" \
    --query 'Targets[0].Arn' --output text 2>/dev/null || true)"
  if [[ "${forward_state}" != "ENABLED" ]]; then
    problem "Forwarding rule ${FORWARD_RULE} is ${forward_state}"
  elif [[ "${forward_target}" != *":event-bus/${BUS}" ]]; then
    problem "Forwarding rule ${FORWARD_RULE} does not target ${BUS} (target: ${forward_target:-none})"
  else
    ok "Forwarding rule ${FORWARD_RULE} is enabled"
  fi
fi

# ---------------------------------------------------------------------------------------------- tables
echo "Validating DynamoDB tables..."
table_problems=0
for table_kind in incidents audit state; do
  table="lambda-auto-repair-${table_kind}-${ENVIRONMENT}"
  if ! table_status="$(aws dynamodb describe-table --table-name "${table}" \
    --query 'Table.TableStatus' --output text 2>&1)"; then
    problem "Table ${table} not found ($(reason_of "${table_status}"))"
    table_problems=$((table_problems + 1))
    continue
  fi
  if [[ "${table_status}" != "ACTIVE" ]]; then
    problem "Table ${table} is ${table_status}"
    table_problems=$((table_problems + 1))
    continue
  fi
  ttl_status="$(aws dynamodb describe-time-to-live --table-name "${table}" \
    --query 'TimeToLiveDescription.TimeToLiveStatus' --output text 2>/dev/null || echo UNKNOWN)"
  if [[ "${ttl_status}" != "ENABLED" && "${ttl_status}" != "ENABLING" ]]; then
    problem "Table ${table} has TTL ${ttl_status} (expected ENABLED on expiresAt)"
    table_problems=$((table_problems + 1))
  fi
done
if [[ "${table_problems}" -eq 0 ]]; then
  ok "All tables are active with TTL enabled"
fi

# ---------------------------------------------------------------------------------------------- notifications
echo "Validating SNS..."
TOPIC_NAME="lambda-auto-repair-notifications-${ENVIRONMENT}"
topic_arn=""
if topics="$(aws sns list-topics --output json 2>&1)"; then
  topic_arn="$(jq -r --arg n "${TOPIC_NAME}" '[.Topics[].TopicArn | select(endswith(":" + $n))][0] // ""' <<<"${topics}")"
fi
if [[ -z "${topic_arn}" ]]; then
  problem "Topic ${TOPIC_NAME} not found"
else
  ok "Topic ${TOPIC_NAME} exists"
  if ! subscriptions="$(aws sns list-subscriptions-by-topic --topic-arn "${topic_arn}" --output json 2>&1)"; then
    problem "Subscriptions of ${TOPIC_NAME} could not be listed ($(reason_of "${subscriptions}"))"
  else
    email_count="$(jq '[.Subscriptions[] | select(.Protocol == "email")] | length' <<<"${subscriptions}")"
    pending_count="$(jq '[.Subscriptions[] | select(.Protocol == "email" and .SubscriptionArn == "PendingConfirmation")] | length' <<<"${subscriptions}")"
    if [[ "${email_count}" -eq 0 ]]; then
      problem "Topic ${TOPIC_NAME} has no e-mail subscription"
    elif [[ "${pending_count}" -gt 0 ]]; then
      ok "E-mail subscription exists"
      note "${pending_count} e-mail subscription(s) pending confirmation; click the link in the AWS e-mail"
    else
      ok "E-mail subscription exists"
    fi
  fi
fi

# ---------------------------------------------------------------------------------------------- monitoring
echo "Validating CloudWatch..."
ALARM_NAMES=()
for alarm in "${ALARMS[@]}"; do
  ALARM_NAMES+=("lambda-auto-repair-${alarm}-${ENVIRONMENT}")
done
if ! alarms_output="$(aws cloudwatch describe-alarms --alarm-names "${ALARM_NAMES[@]}" --output json 2>&1)"; then
  problem "Alarms could not be described ($(reason_of "${alarms_output}"))"
else
  alarm_problems=0
  for alarm_name in "${ALARM_NAMES[@]}"; do
    alarm_state="$(jq -r --arg n "${alarm_name}" \
      '[(.MetricAlarms // [])[] | select(.AlarmName == $n) | .StateValue][0] // "MISSING"' <<<"${alarms_output}")"
    case "${alarm_state}" in
      MISSING)
        problem "Alarm ${alarm_name} not found"
        alarm_problems=$((alarm_problems + 1))
        ;;
      ALARM)
        problem "Alarm ${alarm_name} is in ALARM state"
        alarm_problems=$((alarm_problems + 1))
        ;;
      *)
        # An alarm that tells nobody is as good as none: actions on, and the notification topic among them.
        if ! jq -e --arg n "${alarm_name}" --arg t "${topic_arn}" \
          '[(.MetricAlarms // [])[] | select(.AlarmName == $n)][0]
           | (.ActionsEnabled != false) and ($t == "" or ((.AlarmActions // []) | index($t) != null))' \
          <<<"${alarms_output}" >/dev/null; then
          problem "Alarm ${alarm_name} does not notify ${TOPIC_NAME} (actions disabled or topic missing)"
          alarm_problems=$((alarm_problems + 1))
        fi
        ;;
    esac
  done
  if [[ "${alarm_problems}" -eq 0 ]]; then
    ok "All ${#ALARM_NAMES[@]} system alarms exist, notify ${TOPIC_NAME} and none is in ALARM"
  fi
fi
DASHBOARD="lambda-auto-repair-${ENVIRONMENT}"
if ! dashboard_output="$(aws cloudwatch get-dashboard --dashboard-name "${DASHBOARD}" --output json 2>&1)"; then
  problem "Dashboard ${DASHBOARD} not found ($(reason_of "${dashboard_output}"))"
else
  ok "Dashboard ${DASHBOARD} exists"
fi

echo "============================================="
if [[ "${PROBLEMS}" -eq 0 ]]; then
  echo "✅ All checks passed"
  exit 0
fi
echo "❌ ${PROBLEMS} problem(s) found"
exit 1
