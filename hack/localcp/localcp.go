// Package localcp runs a local control plane for the demo and the benchmarks: the real
// kube-apiserver and etcd built by hack/envtest-assets.sh, the APIConnector CRD, and the real
// manager binary as its own process. Nothing here is needed by the operator itself.
package localcp

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControlPlane is a running kube-apiserver + etcd with the CRD installed.
type ControlPlane struct {
	Client     client.Client
	Kubeconfig string // path of an admin kubeconfig
	Dir        string // scratch directory, removed by Stop
	env        *envtest.Environment
}

// Start starts the control plane. root is the repository root; serviceCIDR may be empty.
func Start(root, serviceCIDR string) (*ControlPlane, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		out, err := exec.Command(filepath.Join(root, "hack", "envtest-assets.sh")).Output()
		if err != nil {
			return nil, fmt.Errorf("build envtest assets: %w", err)
		}
		os.Setenv("KUBEBUILDER_ASSETS", string(trimNewline(out)))
	}
	dir, err := os.MkdirTemp("", "apiconnector-")
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join(root, "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	if serviceCIDR != "" {
		env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", serviceCIDR)
	}
	cfg, err := env.Start()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start kube-apiserver and etcd: %w", err)
	}
	cp := &ControlPlane{Dir: dir, env: env}
	user, err := env.AddUser(envtest.User{Name: "apiconnector-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		cp.Stop()
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		cp.Stop()
		return nil, err
	}
	cp.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(cp.Kubeconfig, kc, 0o600); err != nil {
		cp.Stop()
		return nil, err
	}
	scheme := kruntime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = apiv1.AddToScheme(scheme)
	cfg.QPS, cfg.Burst = 500, 1000
	if cp.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

// Stop stops the control plane and removes its scratch directory.
func (cp *ControlPlane) Stop() {
	if cp.env != nil {
		_ = cp.env.Stop()
	}
	os.RemoveAll(cp.Dir)
}

// Build compiles a main package of the repository into the scratch directory; flags go to
// go build (e.g. -ldflags).
func (cp *ControlPlane) Build(root, pkg, name string, flags ...string) (string, error) {
	out := filepath.Join(cp.Dir, name)
	cmd := exec.Command("go", append(append([]string{"build", "-o", out}, flags...), pkg)...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	return out, nil
}

// Manager is the operator running as its own process.
type Manager struct {
	Cmd         *exec.Cmd
	MetricsAddr string
}

// StartManager runs the manager binary against the control plane with plain-HTTP metrics on a
// free loopback port. extra flags are appended; logs go to logs.
func (cp *ControlPlane) StartManager(ctx context.Context, binary string, logs io.Writer, extra ...string) (*Manager, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--kubeconfig=" + cp.Kubeconfig,
		"--metrics-bind-address=" + addr, "--metrics-secure=false",
		"--health-probe-bind-address=127.0.0.1:0",
		// Outside a pod the operator has no namespace of its own for its config-hash key.
		"--hash-key-namespace=default",
	}, extra...)
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start manager: %w", err)
	}
	return &Manager{Cmd: cmd, MetricsAddr: addr}, nil
}

// Stop ends the manager.
func (m *Manager) Stop() {
	if m.Cmd.Process != nil {
		_ = m.Cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = m.Cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = m.Cmd.Process.Kill()
			<-done
		}
	}
}

// FreeAddr returns a free loopback address.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
