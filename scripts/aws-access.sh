# shellcheck shell=bash
# Sourced by deploy.sh and validate-deployment.sh: one definition of which environment they act on and how
# they reach AWS or the local cloud. Reads ENVIRONMENT, PROFILE, LOCAL and REGION from the caller; exports the
# AWS_* variables every `aws` call then uses. The caller sources scripts/common.sh first (die, last_line).

# --local alone means the local environment; anything else must be one the parameter files exist for.
check_environment() {
  if [[ -z "${ENVIRONMENT}" && "${LOCAL}" == true ]]; then
    ENVIRONMENT="local"
  fi
  case "${ENVIRONMENT}" in
    dev | staging | prod | local) ;;
    "") die "--environment is required (dev, staging, prod or local)" ;;
    *) die "invalid --environment '${ENVIRONMENT}' (expected dev, staging, prod or local)" ;;
  esac
}

# An explicit --region must look like one: a typo would otherwise surface as an endpoint error much later.
check_region() {
  if [[ -n "${REGION}" ]] && ! [[ "${REGION}" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]]; then
    die "invalid --region '${REGION}' (expected a region such as us-east-1)"
  fi
}

configure_aws_access() {
  if [[ -n "${PROFILE}" ]]; then
    export AWS_PROFILE="${PROFILE}"
  fi
  if [[ "${LOCAL}" == true ]]; then
    # The local cloud: fake credentials, loopback endpoint, and never a real profile.
    export AWS_ENDPOINT_URL="http://127.0.0.1:${AUTO_REPAIR_LOCAL_PORT:-4566}"
    export AWS_ACCESS_KEY_ID="test"
    export AWS_SECRET_ACCESS_KEY="test"
    unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN
  fi
  if [[ -z "${REGION}" ]]; then
    REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
  fi
  if [[ -z "${REGION}" && "${LOCAL}" != true ]]; then
    REGION="$(aws configure get region 2>/dev/null || true)"
  fi
  REGION="${REGION:-us-east-1}"
  export AWS_REGION="${REGION}" AWS_DEFAULT_REGION="${REGION}"
  export AWS_PAGER=""
}

# Prints the account the credentials belong to; dies with the CLI's reason when there are none or they fail.
caller_account() {
  local identity
  if ! identity="$(aws sts get-caller-identity --output json 2>&1)"; then
    die "AWS credentials are missing or invalid ($(last_line "${identity}"))"
  fi
  jq -r '.Account' <<<"${identity}"
}
