// Package connfile reads APIConnector manifests from files: the rendered configuration the
// controller mounts into the runtime, and the manifests a user tests on a laptop. Decoding is
// strict (unknown or duplicate fields are errors naming their path) and applies the defaults the
// CRD would, because a file never went through the API server.
package connfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/rules"
)

// Bundle is what a set of manifest files holds: connectors, and ConfigMaps their lists refer to.
// Documents of other kinds (Secrets, Namespaces...) are skipped.
type Bundle struct {
	Connectors []*v1alpha1.APIConnector
	ConfigMaps []*corev1.ConfigMap
}

// Load reads the single APIConnector in path (a multi-document YAML or JSON file may hold other
// kinds too) and applies the CRD's defaults.
func Load(path string) (*v1alpha1.APIConnector, error) {
	b, err := LoadFiles(path)
	if err != nil {
		return nil, err
	}
	if len(b.Connectors) != 1 {
		return nil, fmt.Errorf("%s: want exactly one APIConnector, found %d", path, len(b.Connectors))
	}
	return b.Connectors[0], nil
}

// LoadFiles reads every document of every file.
func LoadFiles(paths ...string) (*Bundle, error) {
	b := &Bundle{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if err := b.add(p, data); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Parse reads the documents of data; name is used in errors.
func Parse(name string, data []byte) (*Bundle, error) {
	b := &Bundle{}
	if err := b.add(name, data); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Bundle) add(name string, data []byte) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: read document %d: %w", name, doc, err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		where := fmt.Sprintf("%s (document %d)", name, doc)
		js, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(js, &tm); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		switch {
		case tm.Kind == "APIConnector" || (tm.Kind == "" && tm.APIVersion == ""):
			if tm.APIVersion != "" && tm.APIVersion != v1alpha1.GroupVersion.String() {
				return fmt.Errorf("%s: apiVersion %q is not %s", where, tm.APIVersion, v1alpha1.GroupVersion)
			}
			conn, err := decodeConnector(js)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			b.Connectors = append(b.Connectors, conn)
		case tm.Kind == "ConfigMap" && tm.APIVersion == "v1":
			cm := &corev1.ConfigMap{}
			if err := yaml.Unmarshal(js, cm); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			b.ConfigMaps = append(b.ConfigMaps, cm)
		}
	}
}

// stripComments drops comment-only lines so a document of only comments counts as empty.
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

func decodeConnector(js []byte) (*v1alpha1.APIConnector, error) {
	conn := &v1alpha1.APIConnector{}
	strict, err := sigsjson.UnmarshalStrict(js, conn)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	SetDefaults(conn)
	return conn, nil
}

// SetDefaults applies the CRD's +kubebuilder:default values.
func SetDefaults(conn *v1alpha1.APIConnector) {
	s := &conn.Spec
	if s.FailurePolicy == "" {
		s.FailurePolicy = v1alpha1.FailurePolicyFail
	}
	for i := range s.Calls {
		c := &s.Calls[i]
		if c.Method == "" {
			c.Method = "POST"
		}
		if c.Timeout == nil {
			c.Timeout = &metav1.Duration{Duration: 2 * time.Second}
		}
		if c.FailurePolicy == "" {
			c.FailurePolicy = v1alpha1.FailurePolicyFail
		}
	}
	for i := range s.Events {
		ev := &s.Events[i]
		if ev.Delivery == "" {
			ev.Delivery = v1alpha1.DeliveryAsync
		}
		if ev.FailurePolicy == "" {
			ev.FailurePolicy = v1alpha1.FailurePolicyIgnore
		}
	}
	if t := s.Exposure.TLS; t != nil && t.IssuerRef != nil && t.IssuerRef.Kind == "" {
		t.IssuerRef.Kind = "ClusterIssuer"
	}
	if s.Runtime.Replicas == nil {
		two := int32(2)
		s.Runtime.Replicas = &two
	}
	if a := s.Runtime.Autoscaling; a != nil {
		if a.MinReplicas == 0 {
			a.MinReplicas = 2
		}
		if a.TargetCPUUtilizationPercentage == 0 {
			a.TargetCPUUtilizationPercentage = 70
		}
	}
}

// ListResolver resolves configMapRef lists of a connector in namespace from the bundle's
// ConfigMaps (an empty namespace on either side means "default", as kubectl would apply it).
func (b *Bundle) ListResolver(namespace string) rules.ListResolver {
	return func(ref v1alpha1.ConfigMapKeyReference) ([]string, error) {
		for _, cm := range b.ConfigMaps {
			if cm.Name != ref.Name || orDefault(cm.Namespace) != orDefault(namespace) {
				continue
			}
			data, ok := cm.Data[ref.Key]
			if !ok {
				return nil, fmt.Errorf("ConfigMap %s has no key %s", ref.Name, ref.Key)
			}
			return rules.ParseListData(data), nil
		}
		return nil, fmt.Errorf("ConfigMap %s not found among the given files", ref.Name)
	}
}

func orDefault(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}
