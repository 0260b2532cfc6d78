// Command demo shows the whole path on one machine: a real kube-apiserver and etcd, the CRD, the
// operator, the sample connector config/samples/demo.yaml and its Secret, then the runtime fed the
// very ConfigMap and Secret the controller produced, answering Entra-shaped requests with Basic
// auth. Ctrl-C (or the end) stops everything it started.
//
// The runtime runs as a local process because this control plane has no kubelet; the end-to-end
// suite (hack/e2e) runs the same image in pods on a real cluster.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/hack/localcp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

func main() {
	sample := flag.String("sample", "config/samples/demo.yaml", "manifest with the connector and its Secret")
	flag.Parse()
	// The demo prints its own steps and errors; envtest and the client would otherwise log through
	// controller-runtime's logger, which, never set, prints a warning with a stack trace.
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *sample); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

// step prints what is happening and how long it took.
type steps struct {
	out      io.Writer
	n, total int
}

func (s *steps) do(what string, f func() error) error {
	s.n++
	fmt.Fprintf(s.out, "[%d/%d] %s ... ", s.n, s.total, what)
	start := time.Now()
	if err := f(); err != nil {
		fmt.Fprintln(s.out, "failed")
		return fmt.Errorf("%s: %w", what, err)
	}
	fmt.Fprintf(s.out, "done (%.1fs)\n", time.Since(start).Seconds())
	return nil
}

func run(ctx context.Context, out io.Writer, sample string) error {
	s := &steps{out: out, total: 7}
	var (
		cp      *localcp.ControlPlane
		manager string
		rt      string
		conn    *apiv1.APIConnector
		secret  *corev1.Secret
		mgr     *localcp.Manager
	)
	if err := s.do("Starting kube-apiserver and etcd (built from source on the first run, cached in bin/)", func() (err error) {
		cp, err = localcp.Start(".", "")
		return err
	}); err != nil {
		return err
	}
	defer cp.Stop()
	if err := s.do("Building the operator and the runtime", func() (err error) {
		if manager, err = cp.Build(".", ".", "manager"); err != nil {
			return err
		}
		rt, err = cp.Build(".", "./runtime/cmd/apiconnector-runtime", "apiconnector-runtime")
		return err
	}); err != nil {
		return err
	}
	logs, err := os.Create(filepath.Join(cp.Dir, "manager.log"))
	if err != nil {
		return err
	}
	defer logs.Close()
	if err := s.do("Starting the operator", func() (err error) {
		mgr, err = cp.StartManager(ctx, manager, logs, "--runtime-image=apiconnector-runtime:dev")
		return err
	}); err != nil {
		return err
	}
	defer mgr.Stop()
	if err := s.do("Applying "+sample, func() (err error) {
		conn, secret, err = apply(ctx, cp.Client, sample)
		return err
	}); err != nil {
		return err
	}
	var endpoint string
	if err := s.do("Waiting for the operator to reconcile the connector", func() (err error) {
		endpoint, err = waitReconciled(ctx, cp.Client, conn)
		return err
	}); err != nil {
		fmt.Fprintln(out, "operator log:", logs.Name())
		return err
	}
	fmt.Fprintf(out, "      status.endpoints[0] = %s (configure this URL in Entra ID)\n", endpoint)

	dir := filepath.Join(cp.Dir, "runtime")
	if err := s.do("Writing the ConfigMap and Secret the controller produced, as the pod would mount them", func() error {
		return mountLikeAPod(ctx, cp.Client, conn, dir)
	}); err != nil {
		return err
	}
	addr, err := localcp.FreeAddr()
	if err != nil {
		return err
	}
	ops, err := localcp.FreeAddr()
	if err != nil {
		return err
	}
	runtimeLog, err := os.Create(filepath.Join(cp.Dir, "runtime.log"))
	if err != nil {
		return err
	}
	defer runtimeLog.Close()
	var serve *exec.Cmd
	if err := s.do("Starting the runtime on "+addr, func() error {
		d := children.MakeDeployment(conn, children.Options{RuntimeImage: "local"}, "")
		args := d.Spec.Template.Spec.Containers[0].Args
		args = rewriteArgs(args, dir, addr, ops)
		serve = exec.CommandContext(ctx, rt, args...)
		serve.Stdout, serve.Stderr = runtimeLog, runtimeLog
		if err := serve.Start(); err != nil {
			return err
		}
		return waitReady(ctx, "http://"+ops+"/readyz")
	}); err != nil {
		return err
	}
	defer func() { _ = serve.Process.Signal(syscall.SIGTERM); _ = serve.Wait() }()

	fmt.Fprintln(out, "\nEntra-shaped requests and the runtime's answers:")
	user, pass := string(secret.Data["username"]), string(secret.Data["password"])
	url := "http://" + addr + children.Path(conn)
	for _, r := range []struct{ title, user, pass, body string }{
		{"Continue, with givenName overwritten", user, pass, `{"email":"john@contoso.example","givenName":"jOHN","surname":"Smith","postalCode":"98052","step":"PostAttributeCollection","ui_locales":"en-US"}`},
		{"ShowBlockPage: disposable e-mail domain", user, pass, `{"email":"someone@mailinator.com","givenName":"Sam","step":"PostAttributeCollection"}`},
		{"ValidationError: postal code", user, pass, `{"email":"ann@contoso.example","postalCode":"9805","step":"PostAttributeCollection"}`},
		{"Wrong password", user, "wrong", `{"email":"ann@contoso.example"}`},
	} {
		if err := exchange(ctx, out, url, r.title, r.user, r.pass, r.body); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, "\nDone. Everything the demo started is being stopped.")
	return nil
}

// apply creates the namespace and every object of the sample manifest.
func apply(ctx context.Context, c client.Client, path string) (*apiv1.APIConnector, *corev1.Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var conn *apiv1.APIConnector
	var secret *corev1.Secret
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, nil, err
		}
		if len(u.Object) == 0 {
			continue
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: u.GetNamespace()}}
		if err := c.Create(ctx, ns); client.IgnoreAlreadyExists(err) != nil {
			return nil, nil, err
		}
		if err := c.Create(ctx, u); err != nil {
			return nil, nil, fmt.Errorf("create %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		switch u.GetKind() {
		case "APIConnector":
			conn = &apiv1.APIConnector{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(u), conn); err != nil {
				return nil, nil, err
			}
		case "Secret":
			secret = &corev1.Secret{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(u), secret); err != nil {
				return nil, nil, err
			}
		}
	}
	if conn == nil || secret == nil {
		return nil, nil, fmt.Errorf("%s must hold an APIConnector and its Basic-auth Secret", path)
	}
	return conn, secret, nil
}

func waitReconciled(ctx context.Context, c client.Client, conn *apiv1.APIConnector) (string, error) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		cur := &apiv1.APIConnector{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(conn), cur); err != nil {
			return "", err
		}
		rules := meta.FindStatusCondition(cur.Status.Conditions, "RulesValid")
		if stalled := meta.FindStatusCondition(cur.Status.Conditions, "Stalled"); stalled != nil && stalled.Status == metav1.ConditionTrue {
			return "", fmt.Errorf("the connector is stalled: %s: %s", stalled.Reason, stalled.Message)
		}
		if rules != nil && rules.Status == metav1.ConditionTrue && len(cur.Status.Endpoints) > 0 && cur.Status.ObservedGeneration == cur.Generation {
			*conn = *cur
			return cur.Status.Endpoints[0], nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("no endpoint in status after 60s")
}

// mountLikeAPod writes the rendered config and the credentials where the Deployment mounts them.
func mountLikeAPod(ctx context.Context, c client.Client, conn *apiv1.APIConnector, dir string) error {
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: children.ConfigMapName(conn)}, cm); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "config"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config", children.ConfigKey), []byte(cm.Data[children.ConfigKey]), 0o600); err != nil {
		return err
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: conn.Spec.Authentication.Basic.SecretRef.Name}, secret); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		return err
	}
	for k, v := range secret.Data {
		if err := os.WriteFile(filepath.Join(dir, "secrets", k), v, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// rewriteArgs keeps the Deployment's command line but points it at local paths and ports.
func rewriteArgs(args []string, dir, addr, ops string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		a = strings.Replace(a, children.ConfigDir, filepath.Join(dir, "config"), 1)
		a = strings.Replace(a, children.SecretsDir, filepath.Join(dir, "secrets"), 1)
		switch {
		case strings.HasPrefix(a, "--listen="):
			a = "--listen=" + addr
		case strings.HasPrefix(a, "--ops-listen="):
			a = "--ops-listen=" + ops
		case strings.HasPrefix(a, "--shutdown-delay="):
			a = "--shutdown-delay=0s" // no load balancer to drain from
		}
		out = append(out, a)
	}
	return out
}

func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not become ready", url)
}

func exchange(ctx context.Context, out io.Writer, url, title, user, pass, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n--- %s\n> POST %s (Basic %s:***)\n> %s\n< HTTP %d\n< %s\n", title, url, user, body, resp.StatusCode, pretty(answer))
	return nil
}

func pretty(b []byte) string {
	if len(b) == 0 {
		return "(empty body)"
	}
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return string(b)
	}
	return out.String()
}
