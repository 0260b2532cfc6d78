package version

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	for _, v := range []string{"", "v1.2.3"} {
		version = v
		want := `
# HELP apiconnector_build_info Always 1; the labels name the release (version) and the Go release it was built with (go_version).
# TYPE apiconnector_build_info gauge
apiconnector_build_info{go_version="` + runtime.Version() + `",version="` + Get() + `"} 1
`
		if err := testutil.CollectAndCompare(Collector(), strings.NewReader(want)); err != nil {
			t.Error(err)
		}
	}
	version = ""
	// Unstamped (go test), the build info names the main module's version.
	if got := Get(); got == "" || got == "v1.2.3" {
		t.Errorf("unstamped Get() = %q", got)
	}
	version = "v1.2.3"
	if got := Get(); got != "v1.2.3" {
		t.Errorf("stamped Get() = %q", got)
	}
	version = ""
}
