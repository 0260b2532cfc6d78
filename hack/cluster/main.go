// Command cluster runs a real single-node Kubernetes cluster for the e2e tests, assembled from
// parts available without Docker or a registry: containerd, runc and the CNI plugins from Debian;
// etcd, the Kubernetes components and kubectl built from their Go modules (hack/tools/*); images
// built by hack/images, the operator's and runtime's as a release (hack/release) pushed to a registry
// on the host side of the veth that containerd pulls from; the Gateway API CRDs from their Go module;
// Traefik on the host as ingress controller and Gateway API implementation; kube-router's network
// policy controller on the node, so NetworkPolicy objects are enforced (the bridge CNI does not);
// CoreDNS on the node as the cluster's DNS, so pods resolve Service names.
//
//	go run ./hack/cluster up      build or reuse everything, start the cluster, install the operator
//	go run ./hack/cluster status  what runs
//	go run ./hack/cluster down    stop exactly what up started and undo its host changes
//	go run ./hack/cluster env     print the KUBECONFIG and addresses for shells and the e2e client
//
// Isolation: every component except Traefik runs inside the network namespace apic-e2e that `up`
// creates (node IP 172.31.255.2, host side of the veth 172.31.255.1). The CNI bridge, pod
// interfaces and kube-proxy's iptables rules live there and disappear with it. The host only gets
// the veth and two routes (pods and services via the node IP), both removed with the namespace.
// Traefik runs on the host and listens on 127.0.0.1 only (Ingress provider on :18443, Gateway API
// provider on :18444). See docs/e2e.md.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Addresses and ranges. Small on purpose: one node, a handful of pods and services.
const (
	netnsName = "apic-e2e"
	hostVeth  = "apic-e2e0"
	nsVeth    = "apic0"
	// hostIP is where Traefik's connections to pods come from: hack/cluster/operator-settings.json gives the
	// operator --ingress-cidrs=<hostIP>/32 so the connectors' NetworkPolicies admit it.
	hostIP       = "172.31.255.1"
	nodeIP       = "172.31.255.2"
	vethCIDR     = "/30"
	podCIDR      = "10.244.0.0/24"
	serviceCIDR  = "10.96.0.0/24"
	apiServiceIP = "10.96.0.1"
	nodeName     = "apic-e2e"
	apiServerURL = "https://" + nodeIP + ":6443"
	// IngressAddr is where Traefik serves HTTPS (the websecure entry point) on the host.
	ingressAddr = "127.0.0.1:18443"
	// GatewayAddr is Traefik's entry point for Gateway API listeners: a Gateway listener binds to
	// the entry point whose address ends in the listener's port, so listeners use port 18444.
	gatewayAddr = "127.0.0.1:18444"
	pauseImage  = "docker.io/library/apiconnector-pause:dev"
	traefikVer  = "v3.6.12"
	cniBinDir   = "/usr/lib/cni"
	// kubeRouterHealth is kube-router's health endpoint on the node IP (reachable from the host).
	kubeRouterHealth = "http://" + nodeIP + ":20244/healthz"
	// dnsReady is CoreDNS's ready endpoint on the node IP; it serves DNS on nodeIP:53, the pods'
	// nameserver (kubelet clusterDNS).
	dnsReady = "http://" + nodeIP + ":8181/ready"
	// registryAddr is the OCI registry (hack/images/registry) on the host side of the veth: the
	// host pushes to it and containerd, in the netns, pulls from it over plain HTTP. A fixed port,
	// because containerd's per-registry configuration (certs.d/<host:port>) names it.
	registryAddr = hostIP + ":18500"
	// releaseVersion is the version of the release the cluster builds and installs.
	releaseVersion = "v0.0.0-e2e"
	waitReadyFor   = 3 * time.Minute
)

// aptPackages are installed when a command or file they provide is missing.
var aptPackages = map[string]string{
	"containerd":                  "/usr/bin/containerd",
	"runc":                        "/usr/sbin/runc",
	"containernetworking-plugins": cniBinDir + "/bridge",
	"iptables":                    "/usr/sbin/iptables",
	"conntrack":                   "/usr/sbin/conntrack",
	"iproute2":                    "/usr/sbin/ip",
	"util-linux":                  "/usr/bin/nsenter",
	"ipset":                       "/usr/sbin/ipset", // kube-router's policy sets
}

// fixedHostPaths are paths outside the state folder that the kubelet or containerd use whatever
// they are configured with. `up` records which of them did not exist; `down` removes those.
var fixedHostPaths = []string{"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni", "/run/containerd", "/etc/cni", "/opt/cni", "/opt/containerd"}

type cluster struct {
	root  string // repository root
	state string // state folder
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cluster up|down|status|env")
		os.Exit(2)
	}
	root, err := repoRoot()
	if err != nil {
		fatal(err)
	}
	c := &cluster{root: root, state: os.Getenv("APIC_E2E_STATE")}
	if c.state == "" {
		c.state = filepath.Join(root, "bin", "cluster")
	}
	// Mount points are listed by their real path: with a symlink in the state path (bin/ often is
	// one), down would not recognise the kubelet's mounts as its own.
	if real, err := filepath.EvalSymlinks(c.state); err == nil {
		c.state = real
	} else if dir, err := filepath.EvalSymlinks(filepath.Dir(c.state)); err == nil {
		c.state = filepath.Join(dir, filepath.Base(c.state))
	}
	if os.Geteuid() != 0 && os.Args[1] != "env" {
		fatal(errors.New("must run as root (containerd, kubelet, network namespaces)"))
	}
	switch os.Args[1] {
	case "up":
		start := time.Now()
		if err := c.up(); err != nil {
			fmt.Fprintln(os.Stderr, "cluster up failed:", err)
			c.dumpTails()
			os.Exit(1)
		}
		fmt.Printf("cluster up in %s\n", time.Since(start).Round(time.Second))
		c.printEnv()
	case "down":
		start := time.Now()
		if err := c.down(); err != nil {
			fatal(err)
		}
		fmt.Printf("cluster down in %s\n", time.Since(start).Round(time.Second))
	case "status":
		c.status()
	case "env":
		c.printEnv()
	case "logs":
		c.dumpTails()
	default:
		fatal(fmt.Errorf("unknown command %q", os.Args[1]))
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "cluster:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/apiconnector/operator\n")) {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no repository root above %s", dir)
		}
	}
}

func (c *cluster) path(p ...string) string { return filepath.Join(append([]string{c.state}, p...)...) }
func (c *cluster) kubeconfig(name string) string {
	return c.path("kubeconfig", name+".kubeconfig")
}

func (c *cluster) printEnv() {
	fmt.Printf("export KUBECONFIG=%s\n", c.kubeconfig("admin"))
	fmt.Printf("export APIC_E2E_INGRESS=%s\n", ingressAddr)
	fmt.Printf("export APIC_E2E_GATEWAY=%s\n", gatewayAddr)
	fmt.Printf("export APIC_E2E_HARNESS_CA=%s\n", c.path("pki", "harness-ca"))
	fmt.Printf("export APIC_E2E_STATE=%s\n", c.state)
	fmt.Printf("export APIC_E2E_NETPOL_HEALTH=%s\n", kubeRouterHealth)
	fmt.Printf("export APIC_E2E_REGISTRY=%s\n", registryAddr)
	fmt.Printf("export APIC_E2E_DIST=%s\n", c.distDir())
	fmt.Printf("export APIC_E2E_HOST_IP=%s\n", hostIP)
	fmt.Printf("export PATH=%s:%s:$PATH\n", c.kubeBinDir(), filepath.Dir(c.helmBin("")))
}

// run runs a command to completion with a bound, returning combined output on failure.
func run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// inNS runs a command inside the cluster's network namespace.
func inNS(timeout time.Duration, name string, args ...string) (string, error) {
	return run(timeout, "nsenter", append([]string{"--net=/run/netns/" + netnsName, "--", name}, args...)...)
}

func (c *cluster) kubectl(timeout time.Duration, args ...string) (string, error) {
	return run(timeout, filepath.Join(c.kubeBinDir(), "kubectl"), append([]string{"--kubeconfig", c.kubeconfig("admin")}, args...)...)
}

// --- up ---

func (c *cluster) up() error {
	if pid := c.alive("kube-apiserver"); pid > 0 {
		logf("cluster already running (kube-apiserver pid %d); run down first to restart", pid)
		return c.installAddons()
	}
	for _, d := range []string{"logs", "pids", "kubeconfig", "config", "cni/net.d", "cni/ipam", "etcd", "containerd", "kubelet", "pod-logs"} {
		if err := os.MkdirAll(c.path(d), 0o755); err != nil {
			return err
		}
	}
	steps := []struct {
		name string
		fn   func() error
	}{
		{"host packages", c.ensurePackages},
		{"binaries", c.ensureBinaries},
		{"PKI and kubeconfigs", c.ensurePKIAndKubeconfigs},
		{"images", c.buildImages}, // after the PKI: the harness CA goes into the images' CA bundle
		{"network namespace", c.ensureNetwork},
		{"registry", c.startRegistry}, // on the host side of the veth
		{"release", c.buildRelease},
		{"configuration", c.writeConfigs},
		{"containerd", c.startContainerd},
		{"image import", c.importImages},
		{"control plane", c.startControlPlane},
		{"cluster DNS", c.startDNS},
		{"node", c.startNode},
		{"network policy", c.startNetworkPolicy},
		{"addons", c.installAddons},
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		logf("%s: done in %s", s.name, time.Since(t).Round(100*time.Millisecond))
	}
	return nil
}

func (c *cluster) ensurePackages() error {
	var missing []string
	for pkg, file := range aptPackages {
		if _, err := os.Stat(file); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	logf("installing %s with apt-get", strings.Join(missing, " "))
	if out, err := run(5*time.Minute, "apt-get", "update", "-qq"); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	args := append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)
	cmd := exec.Command("apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install: %w\n%s", err, out)
	}
	// Debian starts containerd as a service on install; ours runs with its own config and state.
	// Stop only the unit the package just started, so nothing else listens on its socket.
	_, _ = run(time.Minute, "systemctl", "disable", "--now", "containerd")
	return nil
}

// --- binaries ---

func modVersion(gomod, module string) (string, error) {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "require" && f[1] == module {
			return f[2], nil
		}
		if len(f) >= 2 && f[0] == module {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("%s: no require %s", gomod, module)
}

func (c *cluster) k8sVersion() string {
	v, err := modVersion(filepath.Join(c.root, "hack/tools/kube/go.mod"), "k8s.io/kubernetes")
	if err != nil {
		fatal(err)
	}
	return v
}

func (c *cluster) kubeBinDir() string { return filepath.Join(c.root, "bin", "kube", c.k8sVersion()) }

// envtestDir is where hack/envtest-assets.sh keeps kube-apiserver and etcd (shared with make test).
func (c *cluster) envtestDir() string {
	out, err := run(30*time.Minute, filepath.Join(c.root, "hack", "envtest-assets.sh"))
	if err != nil {
		fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

func goBuild(dir, out, pkg, ldflags string) error {
	if _, err := os.Stat(out); err == nil {
		return nil
	}
	t := time.Now()
	logf("building %s (cached afterwards in %s)", pkg, filepath.Dir(out))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out+".tmp", pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	logf("built %s in %s", pkg, time.Since(t).Round(time.Second))
	return os.Rename(out+".tmp", out)
}

func (c *cluster) ensureBinaries() error {
	v := c.k8sVersion()
	ld := fmt.Sprintf("-s -w -X k8s.io/component-base/version.gitVersion=%[1]s -X k8s.io/client-go/pkg/version.gitVersion=%[1]s"+
		" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=%[2]s", v, strings.Split(v, ".")[1])
	for _, comp := range []string{"kubectl", "kube-scheduler", "kube-proxy", "kube-controller-manager", "kubelet"} {
		if err := goBuild(filepath.Join(c.root, "hack/tools/kube"), filepath.Join(c.kubeBinDir(), comp), "k8s.io/kubernetes/cmd/"+comp, ld); err != nil {
			return err
		}
	}
	c.envtestDir() // kube-apiserver and etcd
	tv, err := modVersion(filepath.Join(c.root, "hack/tools/traefik/go.mod"), "github.com/traefik/traefik/v3")
	if err != nil {
		return err
	}
	if err := goBuild(filepath.Join(c.root, "hack/tools/traefik"), c.traefikBin(tv), "github.com/traefik/traefik/v3/cmd/traefik",
		"-s -w -X github.com/traefik/traefik/v3/pkg/version.Version="+tv); err != nil {
		return err
	}
	if err := goBuild(filepath.Join(c.root, "hack/tools/kube-router"), c.kubeRouterBin(), "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router", "-s -w"); err != nil {
		return err
	}
	if err := goBuild(filepath.Join(c.root, "hack/tools/coredns"), c.coreDNSBin(), ".", "-s -w"); err != nil {
		return err
	}
	hv, err := modVersion(filepath.Join(c.root, "hack/tools/helm/go.mod"), "helm.sh/helm/v4")
	if err != nil {
		return err
	}
	return goBuild(filepath.Join(c.root, "hack/tools/helm"), c.helmBin(hv), "helm.sh/helm/v4/cmd/helm",
		"-s -w -X helm.sh/helm/v4/internal/version.version="+hv)
}

// helmBin is the helm command the suite installs the release's chart with.
func (c *cluster) helmBin(v string) string {
	if v == "" {
		v, _ = modVersion(filepath.Join(c.root, "hack/tools/helm/go.mod"), "helm.sh/helm/v4")
	}
	return filepath.Join(c.root, "bin", "helm", v, "helm")
}

func (c *cluster) coreDNSBin() string {
	v, err := modVersion(filepath.Join(c.root, "hack/tools/coredns/go.mod"), "github.com/coredns/coredns")
	if err != nil {
		fatal(err)
	}
	return filepath.Join(c.root, "bin", "coredns", v, "coredns")
}

func (c *cluster) kubeRouterBin() string {
	v, err := modVersion(filepath.Join(c.root, "hack/tools/kube-router/go.mod"), "github.com/cloudnativelabs/kube-router/v2")
	if err != nil {
		fatal(err)
	}
	return filepath.Join(c.root, "bin", "kube-router", v, "kube-router")
}

func (c *cluster) traefikBin(v string) string {
	if v == "" {
		v, _ = modVersion(filepath.Join(c.root, "hack/tools/traefik/go.mod"), "github.com/traefik/traefik/v3")
	}
	return filepath.Join(c.root, "bin", "traefik", v, "traefik")
}

// tarballImages are the images of test tooling, imported into containerd from tarballs: the pod
// sandbox and the e2e services. The operator and the runtime come from the registry (buildRelease).
var tarballImages = []string{"apiconnector-pause", "apiconnector-e2e-services"}

// buildImages builds the tarball images with the harness CA added to their CA bundle: the e2e
// services present certificates it issued.
func (c *cluster) buildImages() error {
	cmd := exec.Command("go", append([]string{"run", ".", "-root", c.root, "-out", filepath.Join(c.root, "bin", "images"),
		"-extra-ca", c.path("pki", "harness-ca.crt")}, tarballImages...)...)
	cmd.Dir = filepath.Join(c.root, "hack", "images")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// distDir is where buildRelease writes the release (make release's dist/).
func (c *cluster) distDir() string { return c.path("dist") }

// startRegistry starts the OCI registry on registryAddr and waits until it answers /v2/. A port
// another process holds fails here, naming it, rather than as image pull errors later.
func (c *cluster) startRegistry() error {
	if l, err := net.Listen("tcp", registryAddr); err != nil {
		return fmt.Errorf("the e2e registry's address %s is taken (%v): stop whatever listens there (ss -ltnp 'sport = :%s')",
			registryAddr, err, strings.Split(registryAddr, ":")[1])
	} else {
		l.Close()
	}
	bin := c.path("registry", "registry")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./registry")
	cmd.Dir = filepath.Join(c.root, "hack", "images")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build hack/images/registry: %w\n%s", err, out)
	}
	if err := c.startProc("registry", true, nil, bin, "-addr", registryAddr); err != nil {
		return err
	}
	return c.waitComponent([]string{"registry"}, "registry on "+registryAddr, 30*time.Second, registryCheck)
}

// registryCheck is nil when the registry answers the distribution API's version check.
func registryCheck() error {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + registryAddr + "/v2/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v2/: %s", resp.Status)
	}
	return nil
}

// buildRelease builds the operator's and runtime's release for the host's platform with the
// harness CA in their CA bundle (so the runtime verifies the e2e services), pushes the images with
// their SBOM referrers to the registry, writes install.yaml and the chart pinned to the pushed
// digests, and pushes the chart to the registry as an OCI artifact: make release, then make
// publish (images and chart) for REGISTRY=registryAddr.
func (c *cluster) buildRelease() error {
	if err := os.RemoveAll(c.distDir()); err != nil {
		return err
	}
	epoch, err := run(10*time.Second, "git", "-C", c.root, "log", "-1", "--format=%ct")
	if err != nil {
		return err
	}
	env := append(os.Environ(), "SOURCE_DATE_EPOCH="+strings.TrimSpace(epoch))
	images := exec.Command("go", "run", ".", "-root", c.root, "-version", releaseVersion, "-platforms", "linux/"+runtime.GOARCH,
		"-extra-ca", c.path("pki", "harness-ca.crt"), "-oci", filepath.Join(c.distDir(), "images"), "-push", registryAddr)
	images.Dir = filepath.Join(c.root, "hack", "images")
	release := exec.Command("go", "run", "./hack/release", "-version", releaseVersion, "-registry", registryAddr, "-dist", c.distDir())
	release.Dir = c.root
	for _, cmd := range []*exec.Cmd{images, release} {
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(cmd.Args[:3], " "), err)
		}
	}
	charts, _ := filepath.Glob(filepath.Join(c.distDir(), "apiconnector-operator-*.tgz"))
	if len(charts) != 1 {
		return fmt.Errorf("want one chart in %s, found %v", c.distDir(), charts)
	}
	// The registry speaks plain HTTP on the host's side of the veth.
	if out, err := run(2*time.Minute, c.helmBin(""), "push", charts[0], "oci://"+registryAddr+"/charts", "--plain-http"); err != nil {
		return fmt.Errorf("helm push %s: %w\n%s", filepath.Base(charts[0]), err, out)
	}
	return nil
}

func (c *cluster) ensurePKIAndKubeconfigs() error {
	if err := c.ensurePKI(); err != nil {
		return err
	}
	for _, n := range []string{"admin", "controller-manager", "scheduler", "kubelet", "kube-proxy", "traefik", "kube-router", "coredns"} {
		if err := c.writeKubeconfig(n); err != nil {
			return err
		}
	}
	return nil
}

// --- network ---

func (c *cluster) ensureNetwork() error {
	// Record fixed host paths that do not exist yet, so down removes exactly those.
	if _, err := os.Stat(c.path("created-paths")); err != nil {
		var created []string
		for _, p := range fixedHostPaths {
			if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
				created = append(created, p)
			}
		}
		if err := os.WriteFile(c.path("created-paths"), []byte(strings.Join(created, "\n")), 0o644); err != nil {
			return err
		}
		if entries, err := os.ReadDir("/run/netns"); err == nil {
			var pre []string
			for _, e := range entries {
				pre = append(pre, e.Name())
			}
			_ = os.WriteFile(c.path("netns-before"), []byte(strings.Join(pre, "\n")), 0o644)
		}
	}
	if _, err := os.Stat("/run/netns/" + netnsName); err == nil {
		return nil
	}
	cmds := [][]string{
		{"ip", "netns", "add", netnsName},
		{"ip", "link", "add", hostVeth, "type", "veth", "peer", "name", nsVeth, "netns", netnsName},
		{"ip", "addr", "add", hostIP + vethCIDR, "dev", hostVeth},
		{"ip", "link", "set", hostVeth, "up"},
		{"ip", "-n", netnsName, "link", "set", "lo", "up"},
		{"ip", "-n", netnsName, "addr", "add", nodeIP + vethCIDR, "dev", nsVeth},
		{"ip", "-n", netnsName, "link", "set", nsVeth, "up"},
		// No default route: the cluster reaches nothing but the host side of the veth.
		{"ip", "-n", netnsName, "route", "add", serviceCIDR, "via", hostIP},
		// The host reaches pods and services (ClusterIPs) through the node.
		{"ip", "route", "add", podCIDR, "via", nodeIP, "dev", hostVeth},
		{"ip", "route", "add", serviceCIDR, "via", nodeIP, "dev", hostVeth},
	}
	for _, a := range cmds {
		if _, err := run(30*time.Second, a[0], a[1:]...); err != nil {
			return err
		}
	}
	// icmp_ratelimit: kube-router refuses connections with ICMP port-unreachable, which the kernel
	// otherwise rate-limits per destination (a short burst, then one a second): a pod refused
	// several times in a row gets no answer to a SYN and retransmits it a second later.
	for _, s := range []string{"net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1", "net.ipv4.conf.all.route_localnet=1", "net.ipv4.icmp_ratelimit=0"} {
		if _, err := inNS(10*time.Second, "sysctl", "-w", s); err != nil {
			logf("warning: %v", err)
		}
	}
	return nil
}

// --- configuration ---

func (c *cluster) writeConfigs() error {
	files := map[string]string{
		"config/containerd.toml": fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # This VM has no CAP_SYS_RESOURCE: without it every sandbox fails with
  # "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
  # One folder per registry host (certs.d/<host:port>/hosts.toml): the e2e registry's.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[9]q
`, c.path("containerd", "root"), c.path("containerd", "state"), c.containerdSock(), c.path("containerd", "opt"),
			pauseImage, c.path("containerd", "runc"), cniBinDir, c.path("cni", "net.d"), c.path("config", "certs.d")),
		// The e2e registry speaks plain HTTP: an http:// host is what tells containerd so.
		"config/certs.d/" + registryAddr + "/hosts.toml": fmt.Sprintf(`server = "http://%[1]s"
[host."http://%[1]s"]
  capabilities = ["pull", "resolve"]
`, registryAddr),
		"cni/net.d/10-apic-e2e.conflist": fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "apic-e2e",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, c.path("cni", "ipam"), podCIDR),
		"config/kubelet.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[2]s}
authorization: {mode: Webhook}
tlsCertFile: %[3]s
tlsPrivateKeyFile: %[4]s
containerRuntimeEndpoint: unix://%[5]s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [%[1]s]
resolvConf: %[6]s
podLogsDir: %[7]s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "2%%", imagefs.available: "2%%"}
serializeImagePulls: false
maxPods: 60
rotateCertificates: false
serverTLSBootstrap: false
`, nodeIP, c.path("pki", "ca.crt"), c.path("pki", "kubelet-serving.crt"), c.path("pki", "kubelet-serving.key"),
			c.containerdSock(), c.path("config", "resolv.conf"), c.path("pod-logs")),
		// The node's own resolver, which ClusterFirst pods would forward to: none, the cluster
		// reaches nothing outside. Pods get the cluster DNS (clusterDNS) and its search path.
		"config/resolv.conf": "",
		"config/Corefile": fmt.Sprintf(`cluster.local:53 in-addr.arpa:53 {
    bind %[1]s
    ready %[1]s:8181
    errors
    kubernetes cluster.local in-addr.arpa {
        kubeconfig %[2]s
        ttl 5
    }
}
`, nodeIP, c.kubeconfig("coredns")),
		"config/kube-proxy.yaml": fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %[1]s}
mode: iptables
clusterCIDR: %[2]s
hostnameOverride: %[3]s
bindAddress: %[4]s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["%[4]s/32"]
# Leave the host-global conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, c.kubeconfig("kube-proxy"), podCIDR, nodeName, nodeIP),
	}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(c.path(name)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(c.path(name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) containerdSock() string { return c.path("containerd", "containerd.sock") }

// --- processes ---

// startProc starts a long-running component in its own session, in the cluster's network
// namespace unless onHost, logging to logs/<name>.log and recording its PID in pids/<name>.pid.
func (c *cluster) startProc(name string, onHost bool, env []string, bin string, args ...string) error {
	logFile, err := os.OpenFile(c.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	var cmd *exec.Cmd
	if onHost {
		cmd = exec.Command(bin, args...)
	} else {
		// nsenter enters only the network namespace and execs the component (same PID).
		cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + netnsName, "--", bin}, args...)...)
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	// alive compares with /proc/<pid>/exe, which is the binary's real path.
	exe := bin
	if real, err := filepath.EvalSymlinks(bin); err == nil {
		exe = real
	}
	if err := os.WriteFile(c.path("pids", name+".pid"), []byte(fmt.Sprintf("%d\n%s\n", pid, exe)), 0o644); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }() // reap if it dies while up still runs
	logf("started %s (pid %d, log %s)", name, pid, c.path("logs", name+".log"))
	return nil
}

// alive returns the PID of a component started by up when that process still runs the same
// binary, else 0.
func (c *cluster) alive(name string) int {
	b, err := os.ReadFile(c.path("pids", name+".pid"))
	if err != nil {
		return 0
	}
	lines := strings.Split(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 1 {
		return 0
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0
	}
	if len(lines) > 1 && strings.TrimSpace(lines[1]) != "" && strings.TrimSuffix(exe, " (deleted)") != strings.TrimSpace(lines[1]) {
		return 0
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if f := strings.Fields(string(st)); len(f) > 2 && f[2] == "Z" {
			return 0
		}
	}
	return pid
}

// exited reports whether the process up started for a component is gone (or a zombie). Unlike
// alive it does not check the binary: right after the start it is still nsenter.
func (c *cluster) exited(name string) bool {
	b, err := os.ReadFile(c.path("pids", name+".pid"))
	if err != nil {
		return true
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.Split(string(b), "\n")[0]))
	if err != nil || pid <= 1 {
		return true
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, after, _ := strings.Cut(string(st), ") ")
	return strings.HasPrefix(after, "Z")
}

// stopProc sends SIGTERM, waits up to grace, then SIGKILL.
func (c *cluster) stopProc(name string, grace time.Duration) {
	pid := c.alive(name)
	if pid == 0 {
		_ = os.Remove(c.path("pids", name+".pid"))
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && c.alive(name) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	if c.alive(name) > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 50 && c.alive(name) > 0; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	logf("stopped %s (pid %d)", name, pid)
	_ = os.Remove(c.path("pids", name+".pid"))
}

// waitFor polls check until it returns nil or the timeout passes; it gives up at once on an
// exitedError.
func waitFor(what string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return nil
		}
		if errors.As(err, new(exitedError)) {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %s waiting for %s: %v", timeout, what, err)
}

// exitedError says a component up started is no longer running: waiting longer cannot help.
type exitedError struct{ error }

// waitComponent is waitFor for components up started: it fails as soon as one of them has
// exited, with the end of its log, instead of waiting out the timeout.
func (c *cluster) waitComponent(names []string, what string, timeout time.Duration, check func() error) error {
	return waitFor(what, timeout, func() error {
		for _, n := range names {
			if c.exited(n) {
				return exitedError{fmt.Errorf("%s exited; last lines of %s:\n%s", n, c.path("logs", n+".log"), strings.Join(c.tail(n, 20), "\n"))}
			}
		}
		return check()
	})
}

func dialCheck(netns bool, addr string) func() error {
	return func() error {
		if netns {
			_, err := inNS(5*time.Second, "bash", "-c", "exec 3<>/dev/tcp/"+strings.Replace(addr, ":", "/", 1))
			return err
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	}
}

func (c *cluster) startContainerd() error {
	if err := c.startProc("containerd", false, nil, "/usr/bin/containerd", "--config", c.path("config", "containerd.toml")); err != nil {
		return err
	}
	return c.waitComponent([]string{"containerd"}, "containerd", time.Minute, func() error {
		_, err := run(5*time.Second, "ctr", "--address", c.containerdSock(), "version")
		return err
	})
}

func (c *cluster) importImages() error {
	for _, name := range tarballImages {
		t := filepath.Join(c.root, "bin", "images", strings.TrimPrefix(name, "apiconnector-")+".tar")
		if _, err := run(2*time.Minute, "ctr", "--address", c.containerdSock(), "-n", "k8s.io", "images", "import", "--no-unpack=false", t); err != nil {
			return err
		}
	}
	return nil
}

func (c *cluster) startControlPlane() error {
	etcdDir := c.envtestDir()
	pki := c.path("pki")
	if err := c.startProc("etcd", false, nil, filepath.Join(etcdDir, "etcd"),
		"--data-dir", c.path("etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "default=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level", "warn"); err != nil {
		return err
	}
	if err := c.waitComponent([]string{"etcd"}, "etcd", time.Minute, dialCheck(true, "127.0.0.1:2379")); err != nil {
		return err
	}
	p := func(f string) string { return filepath.Join(pki, f) }
	if err := c.startProc("kube-apiserver", false, nil, filepath.Join(etcdDir, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address="+nodeIP, "--advertise-address="+nodeIP, "--secure-port=6443",
		"--service-cluster-ip-range="+serviceCIDR,
		"--client-ca-file="+p("ca.crt"), "--tls-cert-file="+p("apiserver.crt"), "--tls-private-key-file="+p("apiserver.key"),
		"--service-account-key-file="+p("sa.pub"), "--service-account-signing-key-file="+p("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--kubelet-client-certificate="+p("apiserver-kubelet-client.crt"), "--kubelet-client-key="+p("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority="+p("ca.crt"),
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		// PodSecurity is on by default; named so the e2e's restricted namespaces cannot lose it.
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction,PodSecurity",
		"--allow-privileged=true", "--profiling=false", "--v=1"); err != nil {
		return err
	}
	if err := c.waitComponent([]string{"etcd", "kube-apiserver"}, "kube-apiserver /readyz", 2*time.Minute, func() error {
		out, err := c.kubectl(5*time.Second, "get", "--raw", "/readyz")
		if err == nil && strings.TrimSpace(out) != "ok" {
			return errors.New(out)
		}
		return err
	}); err != nil {
		return err
	}
	kb := c.kubeBinDir()
	if err := c.startProc("kube-controller-manager", false, nil, filepath.Join(kb, "kube-controller-manager"),
		"--kubeconfig="+c.kubeconfig("controller-manager"),
		"--authentication-kubeconfig="+c.kubeconfig("controller-manager"),
		"--authorization-kubeconfig="+c.kubeconfig("controller-manager"),
		"--bind-address=127.0.0.1", "--secure-port=10257", "--leader-elect=false",
		"--root-ca-file="+p("ca.crt"), "--service-account-private-key-file="+p("sa.key"),
		"--cluster-signing-cert-file="+p("ca.crt"), "--cluster-signing-key-file="+p("ca.key"),
		"--use-service-account-credentials=true",
		"--allocate-node-cidrs=false", "--cluster-cidr="+podCIDR, "--service-cluster-ip-range="+serviceCIDR,
		"--v=1"); err != nil {
		return err
	}
	return c.startProc("kube-scheduler", false, nil, filepath.Join(kb, "kube-scheduler"),
		"--kubeconfig="+c.kubeconfig("scheduler"),
		"--authentication-kubeconfig="+c.kubeconfig("scheduler"),
		"--authorization-kubeconfig="+c.kubeconfig("scheduler"),
		"--bind-address=127.0.0.1", "--secure-port=10259", "--leader-elect=false", "--v=1")
}

func (c *cluster) startNode() error {
	kb := c.kubeBinDir()
	if err := c.startProc("kubelet", false, nil, filepath.Join(kb, "kubelet"),
		"--config="+c.path("config", "kubelet.yaml"),
		"--kubeconfig="+c.kubeconfig("kubelet"),
		"--root-dir="+c.path("kubelet"),
		"--hostname-override="+nodeName, "--node-ip="+nodeIP, "--v=1"); err != nil {
		return err
	}
	if err := c.startProc("kube-proxy", false, nil, filepath.Join(kb, "kube-proxy"),
		"--config="+c.path("config", "kube-proxy.yaml"), "--v=1"); err != nil {
		return err
	}
	t := time.Now()
	if err := c.waitComponent([]string{"containerd", "kubelet", "kube-proxy"}, "node Ready", waitReadyFor, func() error {
		out, err := c.kubectl(5*time.Second, "get", "node", nodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err == nil && out != "True" {
			return fmt.Errorf("Ready=%q", out)
		}
		return err
	}); err != nil {
		return err
	}
	logf("node Ready after %s", time.Since(t).Round(100*time.Millisecond))
	return waitFor("default ServiceAccount", time.Minute, func() error {
		_, err := c.kubectl(5*time.Second, "-n", "default", "get", "serviceaccount", "default")
		return err
	})
}

// startNetworkPolicy runs kube-router's network policy controller in the cluster's network
// namespace: only its firewall (the bridge CNI and kube-proxy do pod networking and services). It
// turns NetworkPolicy objects into iptables rules and ipsets in that namespace, so policies are
// enforced as on a real cluster, and they vanish with it. Test tooling only (hack/tools/kube-router).
func (c *cluster) startNetworkPolicy() error {
	if err := c.applyStdin(kubeRouterRBAC); err != nil {
		return err
	}
	if err := c.startProc("kube-router", false, nil, c.kubeRouterBin(),
		"--kubeconfig="+c.kubeconfig("kube-router"), "--hostname-override="+nodeName,
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false", "--enable-cni=false",
		"--enable-ipv4=true", "--enable-ipv6=false", "--service-cluster-ip-range="+serviceCIDR,
		"--health-port=20244", "--metrics-port=0", "--v=0"); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	// Healthy once its caches synced; its chain in FORWARD once the first policy sync ran.
	return c.waitComponent([]string{"kube-router"}, "kube-router healthy and its FORWARD chain in place", time.Minute, func() error {
		resp, err := hc.Get(kubeRouterHealth)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", kubeRouterHealth, resp.Status)
		}
		out, err := inNS(10*time.Second, "iptables", "-S", "FORWARD")
		if err == nil && !strings.Contains(out, "-j KUBE-ROUTER-FORWARD") {
			return errors.New("no jump to KUBE-ROUTER-FORWARD in FORWARD yet")
		}
		return err
	})
}

// startDNS runs CoreDNS with its kubernetes plugin on the node IP in the cluster's network
// namespace: the cluster DNS the kubelet gives every pod (clusterDNS), answering Service names
// from the API server. Test tooling only (hack/tools/coredns).
func (c *cluster) startDNS() error {
	if err := c.applyStdin(coreDNSRBAC); err != nil {
		return err
	}
	if err := c.startProc("coredns", false, nil, c.coreDNSBin(), "-conf", c.path("config", "Corefile")); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	// Ready once the kubernetes plugin has synced its caches.
	return c.waitComponent([]string{"coredns"}, "CoreDNS ready", time.Minute, func() error {
		resp, err := hc.Get(dnsReady)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", dnsReady, resp.Status)
		}
		return nil
	})
}

// installAddons installs the Gateway API CRDs, starts Traefik on the host (Ingress and Gateway
// providers) and installs the operator as a user does: the release's install.yaml (images pinned
// by digest in the registry), then the NetworkPolicy flags this cluster needs as a JSON patch of
// the Deployment (hack/cluster/operator-settings.json).
func (c *cluster) installAddons() error {
	// Before Traefik: its Gateway provider's informers need the CRDs to sync.
	t := time.Now()
	if err := c.installGatewayAPI(); err != nil {
		return fmt.Errorf("gateway API CRDs: %w", err)
	}
	logf("Gateway API CRDs established in %s", time.Since(t).Round(100*time.Millisecond))
	if c.alive("traefik") == 0 {
		if err := c.applyStdin(traefikRBAC); err != nil {
			return err
		}
		if err := c.startProc("traefik", true, []string{"KUBECONFIG=" + c.kubeconfig("traefik")}, c.traefikBin(""),
			"--entryPoints.websecure.address="+ingressAddr,
			"--entryPoints.websecure.http.tls=true",
			// Routers without explicit entry points (the Ingress provider's) attach to websecure
			// only, not to the Gateway entry point as well.
			"--entryPoints.websecure.asDefault=true",
			// Gateway listeners with port 18444 map to this entry point (TLS from the listener).
			"--entryPoints.gateway.address="+gatewayAddr,
			"--providers.kubernetesingress=true",
			"--providers.kubernetesingress.throttleDuration=0s",
			// GatewayClass controllerName traefik.io/gateway-controller. Not the experimental
			// channel: Traefik v3.6 reads TLSRoute/TCPRoute as v1alpha2, which the Gateway API
			// v1.6 standard CRDs no longer serve (its informers would never sync).
			"--providers.kubernetesgateway=true",
			"--providers.kubernetesgateway.throttleDuration=0s",
			"--providers.kubernetesgateway.statusAddress.ip=127.0.0.1",
			// Apply endpoint changes at once (default 2s): the runtime keeps serving only
			// --shutdown-delay (2s) after SIGTERM, see docs/e2e.md.
			"--providers.providersThrottleDuration=0s",
			"--log.level=INFO", "--log.noColor=true", "--accesslog=true", "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false"); err != nil {
			return err
		}
		for _, addr := range []string{ingressAddr, gatewayAddr} {
			if err := c.waitComponent([]string{"traefik"}, "traefik on "+addr, time.Minute, dialCheck(false, addr)); err != nil {
				return err
			}
		}
	}
	// The patch owns the arguments afterwards: --force-conflicts lets a second up re-apply
	// install.yaml over them before patching again.
	if _, err := c.kubectl(2*time.Minute, "apply", "--server-side", "--force-conflicts", "-f", filepath.Join(c.distDir(), "install.yaml")); err != nil {
		return err
	}
	if _, err := c.kubectl(time.Minute, "-n", "apiconnector-system", "patch", "deployment", "apiconnector-controller-manager",
		"--type=json", "--patch-file", filepath.Join(c.root, "hack", "cluster", "operator-settings.json")); err != nil {
		return err
	}
	t = time.Now()
	if _, err := c.kubectl(3*time.Minute, "-n", "apiconnector-system", "rollout", "status", "deployment/apiconnector-controller-manager", "--timeout=170s"); err != nil {
		return err
	}
	logf("operator available after %s", time.Since(t).Round(100*time.Millisecond))
	return nil
}

// gatewayAPIVersion is the Gateway API release whose CRDs are installed: GATEWAY_API_VERSION from
// the environment, else the Makefile's default (the same CRDs the envtest suite uses).
func (c *cluster) gatewayAPIVersion() (string, error) {
	if v := os.Getenv("GATEWAY_API_VERSION"); v != "" {
		return v, nil
	}
	b, err := os.ReadFile(filepath.Join(c.root, "Makefile"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "GATEWAY_API_VERSION" && (f[1] == "?=" || f[1] == "=" || f[1] == ":=") {
			return f[2], nil
		}
	}
	return "", errors.New("no GATEWAY_API_VERSION in the Makefile")
}

// installGatewayAPI applies the standard-channel CRDs shipped in the sigs.k8s.io/gateway-api module
// (from the module cache, downloaded through the Go module proxy) and waits until they are served.
func (c *cluster) installGatewayAPI() error {
	v, err := c.gatewayAPIVersion()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "sigs.k8s.io/gateway-api@"+v)
	cmd.Dir = c.root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output() // stdout is the JSON; "go: downloading" lines go to stderr
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err != nil || jerr != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download -json sigs.k8s.io/gateway-api@%s: %v %v %s %s", v, err, jerr, mod.Error, stderr.String())
	}
	dir := filepath.Join(mod.Dir, "config", "crd", "standard")
	files, _ := filepath.Glob(filepath.Join(dir, "gateway.networking.k8s.io_*.yaml"))
	var crds []string
	for _, f := range files {
		// gateway.networking.k8s.io_httproutes.yaml holds httproutes.gateway.networking.k8s.io.
		plural := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "gateway.networking.k8s.io_"), ".yaml")
		if !strings.HasPrefix(plural, "vap_") {
			crds = append(crds, "crd/"+plural+".gateway.networking.k8s.io")
		}
	}
	if len(crds) == 0 {
		return fmt.Errorf("no CRDs in %s", dir)
	}
	// The folder also holds the ValidatingAdmissionPolicy that refuses experimental-channel CRDs
	// over these (what the release's standard-install.yaml installs).
	if _, err := c.kubectl(2*time.Minute, "apply", "--server-side", "--force-conflicts", "-f", dir); err != nil {
		return err
	}
	_, err = c.kubectl(2*time.Minute, append([]string{"wait", "--for=condition=Established", "--timeout=100s"}, crds...)...)
	return err
}

func (c *cluster) applyStdin(yaml string) error {
	cmd := exec.Command(filepath.Join(c.kubeBinDir(), "kubectl"), "--kubeconfig", c.kubeconfig("admin"), "apply", "--server-side", "-f", "-")
	cmd.Stdin = strings.NewReader(yaml)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl apply: %w\n%s", err, out)
	}
	return nil
}

// traefikRBAC is what Traefik's Ingress provider reads (its client certificate's user), plus the
// node binding below.
const traefikRBAC = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: apic-e2e-traefik
rules:
- apiGroups: [""]
  resources: [services, secrets, nodes, endpoints]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [extensions, networking.k8s.io]
  resources: [ingresses, ingressclasses]
  verbs: [get, list, watch]
- apiGroups: [extensions, networking.k8s.io]
  resources: [ingresses/status]
  verbs: [update]
# The Gateway provider (Traefik's documented gateway-role, without the OTel pods rule).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses, gateways, httproutes, grpcroutes, tcproutes, tlsroutes, referencegrants, backendtlspolicies]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses/status, gateways/status, httproutes/status, grpcroutes/status, tcproutes/status, tlsroutes/status, backendtlspolicies/status]
  verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: apic-e2e-traefik
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: apic-e2e-traefik}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "apic-e2e:traefik"}
---
# Fallback for the Node authorizer's graph lagging behind a just-bound pod on a fresh API server:
# the kubelet's first status update is refused ("no relationship found") and retried only ~30 s
# later. RBAC's system:node role lets it through; NodeRestriction admission still applies.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: apic-e2e-nodes
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:node"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:nodes"}
`

// kubeRouterRBAC is what kube-router's informers read (its client certificate's user).
const kubeRouterRBAC = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: apic-e2e-kube-router
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, nodes, endpoints]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: apic-e2e-kube-router
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: apic-e2e-kube-router}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "apic-e2e:kube-router"}
`

// coreDNSRBAC is what CoreDNS's kubernetes plugin reads (its client certificate's user): the
// rules of the system:coredns role Kubernetes installers create.
const coreDNSRBAC = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: apic-e2e-coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: apic-e2e-coredns
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: apic-e2e-coredns}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "apic-e2e:coredns"}
`

// --- status ---

var components = []string{"registry", "containerd", "etcd", "kube-apiserver", "coredns", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kube-router", "traefik"}

func (c *cluster) status() {
	for _, n := range components {
		if pid := c.alive(n); pid > 0 {
			fmt.Printf("%-24s running  pid %d\n", n, pid)
		} else {
			fmt.Printf("%-24s stopped\n", n)
		}
	}
	if c.alive("kube-apiserver") > 0 {
		out, _ := c.kubectl(10*time.Second, "get", "nodes,pods", "-A", "-o", "wide")
		fmt.Print(out)
	}
}

// dumpTails prints the last lines of every component log.
func (c *cluster) dumpTails() {
	for _, n := range components {
		if lines := c.tail(n, 40); lines != nil {
			fmt.Fprintf(os.Stderr, "===== %s (last %d lines of %s)\n%s\n", n, len(lines), c.path("logs", n+".log"), strings.Join(lines, "\n"))
		}
	}
}

// tail returns the last n lines of a component's log, nil when it has none.
func (c *cluster) tail(name string, n int) []string {
	f, err := os.Open(c.path("logs", name+".log"))
	if err != nil {
		return nil
	}
	defer f.Close()
	lines := []string{}
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}
