# shellcheck shell=bash
# Sourced by deploy.sh and validate-deployment.sh: how they report progress and errors, read option values
# and check their tools. The caller sets SCRIPT_NAME before sourcing.

# deploy.sh exits 1 on an error; validate-deployment.sh sets 2, keeping 1 for "the deployment has problems".
DIE_STATUS=1

die() {
  echo "${SCRIPT_NAME}: error: $*" >&2
  exit "${DIE_STATUS}"
}
warn() { echo "${SCRIPT_NAME}: warning: $*" >&2; }
step() { echo "==> $*"; }
info() { echo "    $*"; }

# Usage: need_value "$@" inside the option loop, before reading "$2".
need_value() {
  if [[ $# -lt 2 || -z "$2" || "$2" == --* ]]; then
    die "option $1 requires a value (see --help)"
  fi
}

# The last non-empty line of a command's output: the AWS CLI puts the reason there.
last_line() {
  echo "$1" | grep -v '^$' | tail -n 1
}

require_aws_cli_and_jq() {
  command -v aws >/dev/null 2>&1 || die "the AWS CLI ('aws') is not installed or not on PATH"
  command -v jq >/dev/null 2>&1 || die "'jq' is not installed or not on PATH"
}
