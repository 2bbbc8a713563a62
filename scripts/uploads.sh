# shellcheck shell=bash
# Sourced by deploy.sh: uploads the files whose content changed. `aws s3 sync` decides by size and modification
# time (with --size-only by size alone), so an edit that keeps the size can be skipped; and an object's ETag is not
# its MD5 under SSE-KMS, so the content hash travels in the object's metadata (sha256), as the code package's does.

# Uploads each file of DIR whose name matches one of the patterns to s3://BUCKET/PREFIX<name>, unless the object's
# sha256 metadata already equals the file's; prints "<uploaded> <matching>". Args: dir bucket prefix pattern...
upload_changed_files() {
  local dir="$1" bucket="$2" prefix="$3"
  shift 3
  local -a names=() files=()
  local pattern file key sha remote uploaded=0
  for pattern in "$@"; do
    names+=(-o -name "${pattern}")
  done
  mapfile -t files < <(find "${dir}" -maxdepth 1 -type f \( "${names[@]:1}" \) | sort)
  for file in "${files[@]}"; do
    key="${prefix}${file##*/}"
    sha="$(file_sha256 "${file}")"
    # A failed read (missing object, throttling) means "upload": never skip on doubt.
    remote="$(aws s3api head-object --bucket "${bucket}" --key "${key}" --query 'Metadata.sha256' \
      --output text 2>/dev/null || true)"
    if [[ "${remote}" != "${sha}" ]]; then
      aws s3 cp --only-show-errors --metadata "sha256=${sha}" "${file}" "s3://${bucket}/${key}"
      uploaded=$((uploaded + 1))
    fi
  done
  echo "${uploaded} ${#files[@]}"
}

file_sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  else
    shasum -a 256 "$1" | cut -d ' ' -f 1
  fi
}
