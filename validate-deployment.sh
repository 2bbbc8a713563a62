#!/usr/bin/env bash
# Checks that a Lambda Auto-Repair deployment is healthy. Exit 0 only when every check passes.
# See docs/DEPLOYMENT.md and ./validate-deployment.sh --help.
set -euo pipefail

SCRIPT_NAME="$(basename "$0")"
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ALARMS=(failed-executions handler-errors dlq-depth sns-delivery-failures)

# shellcheck source=scripts/common.sh
source "${ROOT_DIR}/scripts/common.sh"
# shellcheck source=scripts/aws-access.sh
source "${ROOT_DIR}/scripts/aws-access.sh"
# 1 means "the deployment has problems"; a usage or access error is 2.
DIE_STATUS=2

usage() {
  cat <<USAGE
Usage: ${SCRIPT_NAME} --environment <dev|staging|prod|local> [--region REGION] [--profile PROFILE] [--local]
       ${SCRIPT_NAME} --member --environment <env> [--central-account ID] [--central-region R] [options]

Checks the deployment's stacks, Lambda functions, state machine, event bus and rules, DynamoDB tables,
notification topic and subscription, alarms and dashboard. Prints a line per check; for each problem
"❌ <what> <why>". Exits 0 only when everything is healthy.

Options:
  -e, --environment ENV   dev, staging, prod or local (default with --local: local)
  -r, --region REGION     AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, profile, us-east-1)
  -p, --profile PROFILE   AWS CLI profile (default: AWS_PROFILE)
      --local             check the local cloud (http://127.0.0.1:\${AUTO_REPAIR_LOCAL_PORT:-4566})
      --member            check a member account's stack lambda-auto-repair-member-<env> instead (organisation
                          mode; the member account's credentials): the forwarding rule and its target (the
                          central bus), the forwarder role, the repair role and whom it trusts
      --central-account ID  with --member: the central account expected (default: the stack's parameter)
      --central-region R    with --member: the central region expected (default: the stack's parameter)
  -h, --help              show this help
USAGE
}

ENVIRONMENT=""
REGION=""
PROFILE=""
LOCAL=false
STACKS=()
PROBLEMS=0
TOPIC_NAME=""
TOPIC_ARN=""
MEMBER=false
CENTRAL_ACCOUNT=""
CENTRAL_REGION=""

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      -e | --environment) need_value "$@"; ENVIRONMENT="$2"; shift 2 ;;
      --environment=*) ENVIRONMENT="${1#*=}"; shift ;;
      -r | --region) need_value "$@"; REGION="$2"; shift 2 ;;
      --region=*) REGION="${1#*=}"; shift ;;
      -p | --profile) need_value "$@"; PROFILE="$2"; shift 2 ;;
      --profile=*) PROFILE="${1#*=}"; shift ;;
      --local) LOCAL=true; shift ;;
      --member) MEMBER=true; shift ;;
      --central-account) need_value "$@"; CENTRAL_ACCOUNT="$2"; shift 2 ;;
      --central-account=*) CENTRAL_ACCOUNT="${1#*=}"; shift ;;
      --central-region) need_value "$@"; CENTRAL_REGION="$2"; shift 2 ;;
      --central-region=*) CENTRAL_REGION="${1#*=}"; shift ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown option '$1' (see --help)" ;;
    esac
  done
}

# ---------------------------------------------------------------------------------------------- output
ok() { echo "  ✅ $*"; }
problem() {
  echo "  ❌ $*"
  PROBLEMS=$((PROBLEMS + 1))
}
note() { echo "  ⚠️  $*"; }
# The last line of an AWS CLI error, for "why".
reason_of() { last_line "$1" | sed -E 's/^An error occurred \(([^)]*)\) when calling the [A-Za-z]+ operation: /\1: /'; }

# ---------------------------------------------------------------------------------------------- stacks
check_stacks() {
  local stack status
  for stack in "${STACKS[@]}"; do
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
}

# ---------------------------------------------------------------------------------------------- functions
# The deployment's Lambda functions, one name per line, whichever stack declares them: the stacks are the one
# list, so a function added to (or moved between) templates is checked without editing this script.
deployed_functions() {
  local stack
  for stack in "${STACKS[@]}"; do
    aws cloudformation list-stack-resources --stack-name "${stack}" --output json 2>/dev/null |
      jq -r '.StackResourceSummaries[] | select(.ResourceType == "AWS::Lambda::Function")
             | .PhysicalResourceId // empty' || true
  done
}

check_functions() {
  local function_problems=0 name config state update_status
  local -a names=()
  echo "Validating Lambda functions..."
  mapfile -t names < <(deployed_functions)
  if [[ ${#names[@]} -eq 0 ]]; then
    problem "No Lambda functions found in the stacks ${STACKS[*]}"
    return 0
  fi
  for name in "${names[@]}"; do
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
}

# ---------------------------------------------------------------------------------------------- state machine
check_state_machine() {
  local state_machine="lambda-auto-repair-workflow-${ENVIRONMENT}" sm_arn sm_status
  echo "Validating Step Functions..."
  if ! sm_arn="$(aws stepfunctions list-state-machines --output json 2>&1)"; then
    problem "State machine ${state_machine} could not be listed ($(reason_of "${sm_arn}"))"
    return 0
  fi
  sm_arn="$(jq -r --arg n "${state_machine}" '[.stateMachines[] | select(.name == $n) | .stateMachineArn][0] // ""' <<<"${sm_arn}")"
  if [[ -z "${sm_arn}" ]]; then
    problem "State machine ${state_machine} not found"
  elif ! sm_status="$(aws stepfunctions describe-state-machine --state-machine-arn "${sm_arn}" \
    --query 'status' --output text 2>&1)"; then
    problem "State machine ${state_machine} could not be described ($(reason_of "${sm_status}"))"
  elif [[ "${sm_status}" != "ACTIVE" && "${sm_status}" != "None" ]]; then
    problem "State machine ${state_machine} is ${sm_status}"
  else
    ok "State machine is active"
  fi
}

# ---------------------------------------------------------------------------------------------- events
check_bus_rules() {
  local bus="$1" rules bus_rule_problems=0 rule_name rule_state targets
  if ! rules="$(aws events list-rules --event-bus-name "${bus}" --output json 2>&1)"; then
    problem "Rules of event bus ${bus} could not be listed ($(reason_of "${rules}"))"
    return 0
  fi
  if [[ "$(jq '.Rules | length' <<<"${rules}")" -eq 0 ]]; then
    problem "Event bus ${bus} has no rules (the functions stack adds them)"
    return 0
  fi
  while IFS=$'\t' read -r rule_name rule_state; do
    if [[ "${rule_state}" != "ENABLED" ]]; then
      problem "Rule ${rule_name} on ${bus} is ${rule_state}"
      bus_rule_problems=$((bus_rule_problems + 1))
      continue
    fi
    targets="$(aws events list-targets-by-rule --rule "${rule_name}" --event-bus-name "${bus}" \
      --query 'length(Targets)' --output text 2>/dev/null || echo 0)"
    if [[ "${targets}" == "0" ]]; then
      problem "Rule ${rule_name} on ${bus} has no targets"
      bus_rule_problems=$((bus_rule_problems + 1))
    fi
  done < <(jq -r '.Rules[] | [.Name, .State] | @tsv' <<<"${rules}")
  if [[ "${bus_rule_problems}" -eq 0 ]]; then
    ok "$(jq '.Rules | length' <<<"${rules}") rule(s) on ${bus} are enabled with targets"
  fi
}

check_forwarding_rule() {
  local bus="$1" forward_rule="lambda-auto-repair-forward-alarms-${ENVIRONMENT}" forward forward_state forward_target
  if ! forward="$(aws events describe-rule --name "${forward_rule}" --output json 2>&1)"; then
    problem "Forwarding rule ${forward_rule} not found on the default bus ($(reason_of "${forward}"))"
    return 0
  fi
  forward_state="$(jq -r '.State' <<<"${forward}")"
  forward_target="$(aws events list-targets-by-rule --rule "${forward_rule}" \
    --query 'Targets[0].Arn' --output text 2>/dev/null || true)"
  if [[ "${forward_state}" != "ENABLED" ]]; then
    problem "Forwarding rule ${forward_rule} is ${forward_state}"
  elif [[ "${forward_target}" != *":event-bus/${bus}" ]]; then
    problem "Forwarding rule ${forward_rule} does not target ${bus} (target: ${forward_target:-none})"
  else
    ok "Forwarding rule ${forward_rule} is enabled"
  fi
}

check_events() {
  local bus="lambda-auto-repair-bus-${ENVIRONMENT}" bus_output
  echo "Validating EventBridge..."
  if ! bus_output="$(aws events describe-event-bus --name "${bus}" --output json 2>&1)"; then
    problem "Event bus ${bus} not found ($(reason_of "${bus_output}"))"
  else
    ok "Event bus ${bus} exists"
    check_bus_rules "${bus}"
  fi
  check_forwarding_rule "${bus}"
}

# ---------------------------------------------------------------------------------------------- tables
check_tables() {
  local table_problems=0 table_kind table table_status ttl_status protected
  echo "Validating DynamoDB tables..."
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
    if [[ "${table_kind}" == audit && "${ENVIRONMENT}" =~ ^(staging|prod)$ ]]; then
      # The audit trail is evidence there: entries never expire and the table cannot be deleted.
      protected="$(aws dynamodb describe-table --table-name "${table}" \
        --query 'Table.DeletionProtectionEnabled' --output text 2>/dev/null || echo UNKNOWN)"
      if [[ "${ttl_status}" != "DISABLED" || "${protected}" != "True" ]]; then
        problem "Table ${table} has TTL ${ttl_status}, deletion protection ${protected} (expected DISABLED, True)"
        table_problems=$((table_problems + 1))
      fi
    elif [[ "${ttl_status}" != "ENABLED" && "${ttl_status}" != "ENABLING" ]]; then
      problem "Table ${table} has TTL ${ttl_status} (expected ENABLED on expiresAt)"
      table_problems=$((table_problems + 1))
    fi
  done
  if [[ "${table_problems}" -eq 0 ]]; then
    ok "All tables are active with TTL enabled (the audit table in staging/prod: no TTL, deletion protection)"
  fi
}

# ---------------------------------------------------------------------------------------------- notifications
# Sets TOPIC_ARN (empty when the topic is missing): the alarm check needs it.
check_notifications() {
  local topics subscriptions email_count pending_count
  echo "Validating SNS..."
  if topics="$(aws sns list-topics --output json 2>&1)"; then
    TOPIC_ARN="$(jq -r --arg n "${TOPIC_NAME}" '[.Topics[].TopicArn | select(endswith(":" + $n))][0] // ""' <<<"${topics}")"
  fi
  if [[ -z "${TOPIC_ARN}" ]]; then
    problem "Topic ${TOPIC_NAME} not found"
    return 0
  fi
  ok "Topic ${TOPIC_NAME} exists"
  if ! subscriptions="$(aws sns list-subscriptions-by-topic --topic-arn "${TOPIC_ARN}" --output json 2>&1)"; then
    problem "Subscriptions of ${TOPIC_NAME} could not be listed ($(reason_of "${subscriptions}"))"
    return 0
  fi
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
}

# ---------------------------------------------------------------------------------------------- monitoring
check_alarms() {
  local alarm alarms_output alarm_problems=0 alarm_name alarm_state
  local -a alarm_names=()
  for alarm in "${ALARMS[@]}"; do
    alarm_names+=("lambda-auto-repair-${alarm}-${ENVIRONMENT}")
  done
  if ! alarms_output="$(aws cloudwatch describe-alarms --alarm-names "${alarm_names[@]}" --output json 2>&1)"; then
    problem "Alarms could not be described ($(reason_of "${alarms_output}"))"
    return 0
  fi
  for alarm_name in "${alarm_names[@]}"; do
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
        if ! jq -e --arg n "${alarm_name}" --arg t "${TOPIC_ARN}" \
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
    ok "All ${#alarm_names[@]} system alarms exist, notify ${TOPIC_NAME} and none is in ALARM"
  fi
}

check_dashboard() {
  local dashboard="lambda-auto-repair-${ENVIRONMENT}" dashboard_output
  if ! dashboard_output="$(aws cloudwatch get-dashboard --dashboard-name "${dashboard}" --output json 2>&1)"; then
    problem "Dashboard ${dashboard} not found ($(reason_of "${dashboard_output}"))"
  else
    ok "Dashboard ${dashboard} exists"
  fi
}

# ---------------------------------------------------------------------------------------------- member account
# The central roles that may assume the member role: those whose handlers act in a member account
# (lambda-auto-repair-member.yaml; tests/unit/test_member_template.py derives them from the code).
CENTRAL_ROLE_KINDS=(parse-alarm collect execution verify targets)

# A parameter of the member stack (empty when the stack or the parameter is missing).
member_stack_parameter() {
  aws cloudformation describe-stacks --stack-name "lambda-auto-repair-member-${ENVIRONMENT}" --output json 2>/dev/null |
    jq -r --arg k "$1" '[.Stacks[0].Parameters[]? | select(.ParameterKey == $k) | .ParameterValue][0] // ""'
}

check_member_forwarding() {
  local rule="lambda-auto-repair-forward-alarms-${ENVIRONMENT}" bus_arn="$1" forwarder_arn="$2" output targets
  echo "Validating EventBridge (forwarding to the central bus)..."
  if ! output="$(aws events describe-rule --name "${rule}" --output json 2>&1)"; then
    problem "Forwarding rule ${rule} not found on the default bus ($(reason_of "${output}"))"
    return 0
  fi
  if [[ "$(jq -r '.State' <<<"${output}")" != "ENABLED" ]]; then
    problem "Forwarding rule ${rule} is $(jq -r '.State' <<<"${output}")"
    return 0
  fi
  if ! targets="$(aws events list-targets-by-rule --rule "${rule}" --output json 2>&1)"; then
    problem "Targets of ${rule} could not be listed ($(reason_of "${targets}"))"
    return 0
  fi
  if [[ "$(jq '.Targets | length' <<<"${targets}")" -ne 1 ]] ||
    [[ "$(jq -r '.Targets[0].Arn' <<<"${targets}")" != "${bus_arn}" ]]; then
    problem "Forwarding rule ${rule} does not target the central bus ${bus_arn} (targets: $(jq -r '[.Targets[].Arn] | join(", ")' <<<"${targets}"))"
  elif [[ "$(jq -r '.Targets[0].RoleArn // ""' <<<"${targets}")" != "${forwarder_arn}" ]]; then
    problem "Forwarding rule ${rule} does not deliver through ${forwarder_arn} (role: $(jq -r '.Targets[0].RoleArn // "none"' <<<"${targets}"))"
  else
    ok "Forwarding rule ${rule} is enabled and targets ${bus_arn}"
  fi
}

# Prints the role's inline policy statements as one JSON array; a document that cannot be read is a null in it.
role_statements() {
  local role="$1" name
  while read -r name; do
    [[ -n "${name}" ]] || continue
    aws iam get-role-policy --role-name "${role}" --policy-name "${name}" --output json 2>/dev/null |
      jq -c '.PolicyDocument | if type == "string" then (try fromjson catch null) else . end
             | if type == "object" then [.Statement] | flatten else [null] end'
  done < <(aws iam list-role-policies --role-name "${role}" --query 'PolicyNames[]' --output text 2>/dev/null | tr '\t' '\n') |
    jq -s -c 'add // []'
}

# The role's trust policy as JSON (the CLI decodes IAM's URL-encoded document; a string is still JSON text).
role_trust() {
  jq -c '.Role.AssumeRolePolicyDocument | if type == "string" then fromjson else . end' <<<"$1"
}

check_member_forwarder_role() {
  local role="lambda-auto-repair-member-forwarder-${ENVIRONMENT}" bus_arn="$1" output trust statements
  if ! output="$(aws iam get-role --role-name "${role}" --output json 2>&1)"; then
    problem "Role ${role} not found ($(reason_of "${output}"))"
    return 0
  fi
  trust="$(role_trust "${output}")"
  statements="$(role_statements "${role}")"
  if ! jq -e '[.Statement] | flatten | all(.Principal.Service == "events.amazonaws.com")' <<<"${trust}" >/dev/null; then
    problem "Role ${role} is trusted by more than events.amazonaws.com"
  elif ! jq -e 'all(type == "object")' <<<"${statements}" >/dev/null; then
    problem "Role ${role} has an inline policy that is not a JSON policy document"
  elif ! jq -e --arg bus "${bus_arn}" 'length > 0 and all(.Effect == "Allow" and ([.Action] | flatten) == ["events:PutEvents"]
      and ([.Resource] | flatten) == [$bus])' <<<"${statements}" >/dev/null; then
    problem "Role ${role} may do more than events:PutEvents on ${bus_arn}"
  else
    ok "Role ${role} may only put events on the central bus"
  fi
}

check_member_repair_role() {
  local role="lambda-auto-repair-member-${ENVIRONMENT}" central="$1" organization="$2" output trust expected kind
  echo "Validating IAM (the role the central workflow assumes)..."
  if ! output="$(aws iam get-role --role-name "${role}" --output json 2>&1)"; then
    problem "Role ${role} not found ($(reason_of "${output}"))"
    return 0
  fi
  expected="$(for kind in "${CENTRAL_ROLE_KINDS[@]}"; do
    echo "lambda-auto-repair-${kind}-${ENVIRONMENT}"
  done | jq -R -s -c 'split("\n") | map(select(length > 0)) | sort')"
  trust="$(role_trust "${output}")"
  if ! jq -e --arg acct "${central}" --argjson names "${expected}" '
      [.Statement] | flatten | map(select(.Effect == "Allow")) | all(
        ([.Principal.AWS] | flatten | map(select(startswith("arn:") and (split(":")[4] == $acct)) | split("/")[-1]) | sort) == $names
        and ([.Principal | keys[]] == ["AWS"]))' <<<"${trust}" >/dev/null; then
    problem "Role ${role} is not trusted exactly by the central workflow roles of account ${central} (${expected})"
  elif ! jq -e --arg org "${organization}" '[.Statement] | flatten | map(select(.Effect == "Allow"))
      | all(.Condition.StringEquals["aws:PrincipalOrgID"] == $org)' <<<"${trust}" >/dev/null; then
    problem "Role ${role} does not require aws:PrincipalOrgID ${organization} of the central roles"
  else
    ok "Role ${role} is trusted by the ${#CENTRAL_ROLE_KINDS[@]} central workflow roles of ${central} in ${organization} only"
  fi
}

check_member_args() {
  if [[ "${MEMBER}" != true && -n "${CENTRAL_ACCOUNT}${CENTRAL_REGION}" ]]; then
    die "--central-account and --central-region go with --member"
  fi
  if [[ -n "${CENTRAL_ACCOUNT}" ]] && ! [[ "${CENTRAL_ACCOUNT}" =~ ^[0-9]{12}$ ]]; then
    die "invalid --central-account '${CENTRAL_ACCOUNT}' (expected a 12-digit account id)"
  fi
  if [[ -n "${CENTRAL_REGION}" ]] && ! [[ "${CENTRAL_REGION}" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]]; then
    die "invalid --central-region '${CENTRAL_REGION}' (expected a region such as us-east-1)"
  fi
}

validate_member() {
  local stack="lambda-auto-repair-member-${ENVIRONMENT}" organization bus_arn forwarder_arn account partition
  STACKS=("${stack}")
  echo "=== Lambda Auto-Repair Member Account Validation ==="
  echo "Environment: ${ENVIRONMENT}"
  echo "Region: ${REGION}"
  echo "============================================="
  check_stacks
  account="$(caller_account)"
  CENTRAL_ACCOUNT="${CENTRAL_ACCOUNT:-$(member_stack_parameter CentralAccountId)}"
  CENTRAL_REGION="${CENTRAL_REGION:-$(member_stack_parameter CentralRegion)}"
  organization="$(member_stack_parameter OrganizationId)"
  echo "Central account: ${CENTRAL_ACCOUNT:-unknown} (${CENTRAL_REGION:-unknown}), organisation ${organization:-unknown}"
  if [[ -z "${CENTRAL_ACCOUNT}" || -z "${CENTRAL_REGION}" ]]; then
    problem "Central account and region unknown (no stack ${stack}; pass --central-account and --central-region)"
  else
    case "${REGION}" in
      cn-*) partition="aws-cn" ;;
      us-gov-*) partition="aws-us-gov" ;;
      *) partition="aws" ;;
    esac
    bus_arn="arn:${partition}:events:${CENTRAL_REGION}:${CENTRAL_ACCOUNT}:event-bus/lambda-auto-repair-bus-${ENVIRONMENT}"
    forwarder_arn="arn:${partition}:iam::${account}:role/lambda-auto-repair-member-forwarder-${ENVIRONMENT}"
    check_member_forwarding "${bus_arn}" "${forwarder_arn}"
    check_member_forwarder_role "${bus_arn}"
    check_member_repair_role "${CENTRAL_ACCOUNT}" "${organization}"
  fi
  echo "============================================="
  if [[ "${PROBLEMS}" -eq 0 ]]; then
    echo "✅ All checks passed"
    exit 0
  fi
  echo "❌ ${PROBLEMS} problem(s) found"
  exit 1
}

# ---------------------------------------------------------------------------------------------- main
main() {
  parse_args "$@"
  check_environment
  check_region
  check_member_args
  require_aws_cli_and_jq
  configure_aws_access
  caller_account >/dev/null
  if [[ "${MEMBER}" == true ]]; then
    validate_member
  fi

  STACKS=("lambda-auto-repair-main-${ENVIRONMENT}" "lambda-auto-repair-functions-${ENVIRONMENT}"
    "lambda-auto-repair-monitoring-${ENVIRONMENT}")
  TOPIC_NAME="lambda-auto-repair-notifications-${ENVIRONMENT}"

  echo "=== Lambda Auto-Repair System Validation ==="
  echo "Environment: ${ENVIRONMENT}"
  echo "Region: ${REGION}"
  echo "============================================="
  check_stacks
  check_functions
  check_state_machine
  check_events
  check_tables
  check_notifications
  echo "Validating CloudWatch..."
  check_alarms
  check_dashboard

  echo "============================================="
  if [[ "${PROBLEMS}" -eq 0 ]]; then
    echo "✅ All checks passed"
    exit 0
  fi
  echo "❌ ${PROBLEMS} problem(s) found"
  exit 1
}

main "$@"
