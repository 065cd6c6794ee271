#!/usr/bin/env bash
# Print the synced values, as the user's get-secret.sh does.
set -euo pipefail
for k in username password host port; do
  printf '%s: ' "$k"
  kubectl get secret my-db-secret -n "${NAMESPACE:-default}" -o jsonpath="{.data.$k}" | base64 --decode
  echo
done
