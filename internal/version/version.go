// Package version is the release of the operator and the runtime: one string, stamped into both
// binaries at build time and reported by their --version flags and their metrics.
package version

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Symbol is the linker symbol the build stamps, as in
// go build -ldflags "-X github.com/apiconnector/operator/internal/version.version=v1.2.3".
// The Makefile and hack/images set it from `git describe --tags --always --dirty` or VERSION.
const Symbol = "github.com/apiconnector/operator/internal/version.version"

var version string

// Get is the stamped version. A binary built without the stamp (go run, go test) reports the
// main module's version from its build info, which is "(devel)" for a build in the repository,
// followed by the VCS revision when Go recorded one.
func Get() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return bi.Main.Version + " " + s.Value
		}
	}
	return bi.Main.Version
}

// Collector is the gauge apiconnector_build_info, always 1, labelled with the version and the Go
// release the binary was built with, so dashboards can tell which release each process runs.
func Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "apiconnector_build_info",
		Help:        "Always 1; the labels name the release (version) and the Go release it was built with (go_version).",
		ConstLabels: prometheus.Labels{"version": Get(), "go_version": runtime.Version()},
	})
	g.Set(1)
	return g
}
