// Pins the Istio release whose CRD definitions scripts/install-istio-crds.sh
// copies out of the Go module cache (manifests/charts/base/files/crd-all.gen.yaml,
// the file Istio's base Helm chart installs). Nothing of Istio's source lives
// here, and nothing is built from it: the module is only downloaded.
//
// Istio tags its releases without a "v" (1.31.0, not v1.31.0), so the module
// proxy serves only pseudo-versions of istio.io/istio. This one is commit
// eed52ebb66ad of the release-1.31 branch (2026-08-27 12:45:20 UTC): its
// VERSION file says 1.31, and common/Makefile.common.mk, bin/update_deps.sh
// and common/scripts/setup_env.sh name release-1.31 as their branch (master
// says master there). The CRDs serve v1alpha3, v1beta1 and v1 of
// networking.istio.io and store v1.
//
// There is no Go file, so `go mod tidy` would drop the require: don't run it.
// To move the pin, edit the version below and run
// `go mod download istio.io/istio` here, which records its go.sum lines.
module isthmus/tools/istio

go 1.26.0

require istio.io/istio v0.0.0-20260827124520-eed52ebb66ad
