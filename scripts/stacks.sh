# shellcheck shell=bash
# Sourced by deploy.sh: CloudFormation stack operations. Reads ENVIRONMENT, REGION, DEPLOYMENT_BUCKET and
# MAX_TEMPLATE_BODY_BYTES from the caller and uses its package_tool (content hash of a large template); the
# caller sources scripts/common.sh first (die, step, info).

# Prints the stack's status, DOES_NOT_EXIST when CloudFormation says so. Only its "ValidationError ... does not
# exist" answer means absent: a throttled call or expired credentials must stop the deploy, not lead to a
# create-stack on a stack that exists.
stack_status() {
  local status
  status="$(describe_stack "$1" 'Stacks[0].StackStatus')" || exit
  if [[ -z "${status}" || "${status}" == "DELETE_COMPLETE" ]]; then
    status="DOES_NOT_EXIST"
  fi
  echo "${status}"
}

# Prints an output of the stack (empty when the stack or the output does not exist); dies on any other error.
stack_output() {
  local value
  value="$(describe_stack "$1" "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue")" || exit
  echo "${value}"
}

# describe-stacks with a --query: prints the result, nothing for a stack that does not exist; on any other
# error (throttling, expired credentials, no network) prints the CLI's reason and returns non-zero.
describe_stack() {
  local stack="$1" query="$2" errors result
  errors="$(mktemp)"
  if result="$(aws cloudformation describe-stacks --stack-name "${stack}" --query "${query}" --output text \
    2>"${errors}")"; then
    rm -f "${errors}"
    echo "${result}"
    return 0
  fi
  local reason
  reason="$(last_line "$(cat "${errors}")")"
  rm -f "${errors}"
  if [[ "${reason}" == *"(ValidationError)"*"does not exist"* ]]; then
    return 0
  fi
  echo "${SCRIPT_NAME}: error: cannot read stack ${stack}: ${reason:-describe-stacks failed}" >&2
  return 1
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
  status="$(stack_status "${stack}")" || exit
  if [[ "${status}" == "ROLLBACK_COMPLETE" ]]; then
    step "Stack ${stack} is in ROLLBACK_COMPLETE (a failed first create); deleting it before re-creating"
    remove_stack "${stack}" "${status}"
    status="DOES_NOT_EXIST"
  fi
  if [[ "${status}" == *_IN_PROGRESS ]]; then
    die "stack ${stack} is busy (${status}); wait for it to finish and re-run"
  fi

  if [[ "$(wc -c <"${template}")" -le "${MAX_TEMPLATE_BODY_BYTES}" || -z "${DEPLOYMENT_BUCKET}" ]]; then
    template_args=(--template-body "file://${template}")
  else
    local template_key
    template_key="templates/$(basename "${template}" .yaml)-$(package_tool hash "${template}").yaml"
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

delete_stack() {
  local stack="$1" status
  status="$(stack_status "${stack}")" || exit
  if [[ "${status}" == "DOES_NOT_EXIST" ]]; then
    info "Stack ${stack} does not exist; nothing to delete"
    return 0
  fi
  step "Deleting stack ${stack} (${status})"
  remove_stack "${stack}" "${status}"
  info "${stack} deleted"
}

# Deletes a stack and waits; when the delete fails, prints each resource that could not be deleted with
# CloudFormation's reason (describe-stack-events) and stops. Args: stack status-before
remove_stack() {
  local stack="$1" before="$2" output
  if ! output="$(aws cloudformation delete-stack --stack-name "${stack}" 2>&1)"; then
    die "could not delete stack ${stack} (${before}): $(last_line "${output}")"
  fi
  if ! aws cloudformation wait stack-delete-complete --stack-name "${stack}" >/dev/null 2>&1; then
    print_stack_failures "${stack}"
    die "stack ${stack} (${before}) could not be deleted (status $(stack_status "${stack}")); fix or retain the resources above, then re-run"
  fi
}
