// Command coredns is CoreDNS with only the plugins the e2e cluster's DNS needs: the kubernetes
// plugin answers <service>.<namespace>.svc.cluster.local from the API server, as a cluster's DNS
// does. Test tooling only (hack/cluster), never part of an image or release.
package main

import (
	"log"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() {
	// In CoreDNS's plugin order (plugin.cfg); the stock build compiles in every plugin, with the
	// cloud providers' SDKs.
	if err := dnsserver.SetDirectives([]string{"bind", "ready", "errors", "kubernetes"}); err != nil {
		log.Fatal(err)
	}
	coremain.Run()
}
