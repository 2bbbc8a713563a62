# shellcheck shell=bash
# Sourced by deploy.sh: uploads the files whose content changed. `aws s3 sync` decides by size and modification
# time (with --size-only by size alone), so an edit that keeps the size can be skipped; and an object's ETag is not
# its MD5 under SSE-KMS, so the content hashes are ours: a manifest object records, per key, the sha256 of what
# deploy.sh uploaded and the ETag S3 gave that upload.

# Where the manifests live in the bucket (outside every prefix a knowledge base ingests).
readonly UPLOAD_MANIFEST_PREFIX="deploy-manifests/"

# Uploads each file of DIR whose name matches one of the patterns to s3://BUCKET/PREFIX<name>, unless the manifest
# has the file's sha256 for that key AND the object still has the ETag the manifest recorded (so an object changed
# or deleted outside deploy.sh, a missing manifest or a failed read all mean "upload": never skip on doubt); prints
# "<uploaded> <matching>". A fixed number of AWS CLI calls however many files: a listing, the manifest, one
# recursive copy of the changed files, a listing and the manifest again. Args: dir bucket prefix pattern...
upload_changed_files() {
  local dir="$1" bucket="$2" prefix="$3"
  shift 3
  local -a names=() files=()
  local pattern file key sha listing manifest known stage entries="" next manifest_key uploaded=0
  for pattern in "$@"; do
    names+=(-o -name "${pattern}")
  done
  mapfile -t files < <(find "${dir}" -maxdepth 1 -type f \( "${names[@]:1}" \) | sort)
  manifest_key="${UPLOAD_MANIFEST_PREFIX}${prefix}sha256.json"
  # Two reads, whatever the number of files (one AWS CLI call costs about a second of start-up).
  listing="$(list_etags "${bucket}" "${prefix}")"
  manifest="$(aws s3 cp --only-show-errors "s3://${bucket}/${manifest_key}" - 2>/dev/null)" || manifest='{}'
  jq -e 'type == "object"' <<<"${manifest}" >/dev/null 2>&1 || manifest='{}'
  # "<key> <sha256>" for each object whose ETag is still the one the manifest recorded with that sha256
  known="$(jq -r --argjson listing "${listing}" \
    '. as $m | $listing[] | select(($m[.k].etag // "") == .e and .e != "") | "\(.k) \($m[.k].sha256)"' \
    <<<"${manifest}")"
  stage="$(mktemp -d)"
  for file in "${files[@]}"; do
    key="${prefix}${file##*/}"
    sha="$(file_sha256 "${file}")"
    entries+="${key} ${sha}"$'\n'
    if ! grep -qxF "${key} ${sha}" <<<"${known}"; then
      cp "${file}" "${stage}/"
      uploaded=$((uploaded + 1))
    fi
  done
  if ((uploaded > 0)); then
    if ! aws s3 cp --only-show-errors --recursive "${stage}" "s3://${bucket}/${prefix}"; then
      rm -rf "${stage}"
      return 1
    fi
    listing="$(list_etags "${bucket}" "${prefix}")"
  fi
  rm -rf "${stage}"
  next="$(jq -R -n --argjson listing "${listing}" \
    '[inputs | select(length > 0) | split(" ")] as $files
     | ($listing | map({(.k): .e}) | add // {}) as $etags
     | [$files[] | {(.[0]): {sha256: .[1], etag: ($etags[.[0]] // "")}}] | add // {}' <<<"${entries}")"
  if [[ "$(jq -S -c . <<<"${next}")" != "$(jq -S -c . <<<"${manifest}")" ]]; then
    jq -c . <<<"${next}" | aws s3 cp --only-show-errors - "s3://${bucket}/${manifest_key}" ||
      warn "could not write the upload manifest s3://${bucket}/${manifest_key}: the next run uploads everything again"
  fi
  echo "${uploaded} ${#files[@]}"
}

# [{k: key, e: ETag}] of the objects under a prefix ([] when the read fails: then everything is uploaded).
list_etags() {
  local out
  out="$(aws s3api list-objects-v2 --bucket "$1" --prefix "$2" --query 'Contents[].{k: Key, e: ETag}' \
    --output json 2>/dev/null)" || out='[]'
  jq -c 'if type == "array" then . else [] end' <<<"${out:-[]}" 2>/dev/null || echo '[]'
}

file_sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d ' ' -f 1
  else
    shasum -a 256 "$1" | cut -d ' ' -f 1
  fi
}
