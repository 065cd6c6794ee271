//go:build tools

// Package tools pins the helm command the testenv builds with `go build`.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
