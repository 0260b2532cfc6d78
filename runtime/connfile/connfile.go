// Package connfile reads APIConnector manifests from files: the rendered configuration the
// controller mounts into the runtime, and the manifests a user tests on a laptop. Decoding is
// strict (unknown or duplicate fields are errors naming their path) and applies the defaults the
// CRD would, because a file never went through the API server.
package connfile

import (
	"bufio"
	"bytes"
	"context"
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
	// Origins says where each connector was read, index for index.
	Origins    []Origin
	ConfigMaps []*corev1.ConfigMap
}

// Origin is where a document was read: the file and the document's number in it (from 1).
type Origin struct {
	File     string
	Document int
}

func (o Origin) String() string { return fmt.Sprintf("%s (document %d)", o.File, o.Document) }

// DocumentError is a document that could not be read.
type DocumentError struct {
	Origin
	Err error
}

func (e *DocumentError) Error() string { return e.Origin.String() + ": " + e.Err.Error() }
func (e *DocumentError) Unwrap() error { return e.Err }

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
		if errs := b.add(p, data, false); len(errs) > 0 {
			return nil, errs[0]
		}
	}
	return b, nil
}

// LoadAll reads every document of every file like LoadFiles, but goes on past documents that
// cannot be decoded: it returns what could be read and a problem for each of the others (a file
// that cannot be read, or a YAML stream that cannot be split, ends that file's documents).
func LoadAll(paths ...string) (*Bundle, []error) {
	b := &Bundle{}
	var errs []error
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, b.add(p, data, true)...)
	}
	return b, errs
}

// Parse reads the documents of data; name is used in errors.
func Parse(name string, data []byte) (*Bundle, error) {
	b := &Bundle{}
	if errs := b.add(name, data, false); len(errs) > 0 {
		return nil, errs[0]
	}
	return b, nil
}

// add reads the documents of data; with all it goes on past documents that cannot be decoded.
func (b *Bundle) add(name string, data []byte, all bool) []error {
	var errs []error
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return errs
		}
		if err != nil {
			return append(errs, fmt.Errorf("%s: read document %d: %w", name, doc, err))
		}
		if err := b.addDocument(Origin{File: name, Document: doc}, raw); err != nil {
			errs = append(errs, &DocumentError{Origin: Origin{File: name, Document: doc}, Err: err})
			if !all {
				return errs
			}
		}
	}
}

func (b *Bundle) addDocument(origin Origin, raw []byte) error {
	if len(bytes.TrimSpace(stripComments(raw))) == 0 {
		return nil
	}
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return err
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil
	}
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(js, &tm); err != nil {
		return err
	}
	switch {
	case tm.Kind == "APIConnector" || (tm.Kind == "" && tm.APIVersion == ""):
		if tm.APIVersion != "" && tm.APIVersion != v1alpha1.GroupVersion.String() {
			return fmt.Errorf("apiVersion %q is not %s", tm.APIVersion, v1alpha1.GroupVersion)
		}
		conn, err := decodeConnector(js)
		if err != nil {
			return err
		}
		b.Connectors = append(b.Connectors, conn)
		b.Origins = append(b.Origins, origin)
	case tm.Kind == "ConfigMap" && tm.APIVersion == "v1":
		cm := &corev1.ConfigMap{}
		if err := yaml.Unmarshal(js, cm); err != nil {
			return err
		}
		b.ConfigMaps = append(b.ConfigMaps, cm)
	}
	return nil
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
	if s.Enforcement == "" {
		s.Enforcement = v1alpha1.EnforcementEnforce
	}
	for i := range s.Rules {
		if s.Rules[i].Enforcement == "" {
			s.Rules[i].Enforcement = v1alpha1.EnforcementEnforce
		}
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

// Problem is one thing wrong with a connector of a bundle, located for a person fixing it.
type Problem struct {
	Origin
	// Connector is namespace/name ("default/name" when the manifest has no namespace).
	Connector string
	// Path is the field path (spec.rules[2].when), Item the rule, call, event or list it is in
	// (`rule "postal-code"`), both empty for a problem of the whole connector.
	Path, Item string
	Message    string
}

func (p Problem) String() string {
	where := p.Origin.String() + ": APIConnector " + p.Connector + ": "
	switch {
	case p.Path != "" && p.Item != "":
		where += p.Path + " (" + p.Item + "): "
	case p.Path != "":
		where += p.Path + ": "
	}
	return where + p.Message
}

// Compile compiles every connector of the bundle as the controller does (rules.Compile, lists
// with a configMapRef resolved from the bundle's ConfigMaps) and returns every problem, and the
// non-fatal warnings (Engine.Warnings) the controller reports in the RulesValid condition. Two
// connectors of the same namespace and name are a problem too: one would replace the other.
func (b *Bundle) Compile() (problems, warnings []Problem) {
	seen := map[string]bool{}
	for i, conn := range b.Connectors {
		base := Problem{Connector: orDefault(conn.Namespace) + "/" + conn.Name}
		if i < len(b.Origins) {
			base.Origin = b.Origins[i]
		}
		if seen[base.Connector] {
			p := base
			p.Message = "another APIConnector of the same namespace and name comes earlier; applied, one replaces the other"
			problems = append(problems, p)
		}
		seen[base.Connector] = true
		eng, err := rules.Compile(conn, rules.Options{ResolveList: b.ListResolver(conn.Namespace)})
		if err != nil {
			var ce rules.CompileErrors
			if !errors.As(err, &ce) {
				p := base
				p.Message = err.Error()
				problems = append(problems, p)
				continue
			}
			for _, fe := range ce {
				p := base
				p.Path, p.Item, p.Message = fe.Path, fe.Item, fe.Message
				problems = append(problems, p)
			}
			continue
		}
		for _, w := range eng.Warnings() {
			p := base
			p.Message = w
			warnings = append(warnings, p)
		}
		_ = eng.Close(context.Background())
	}
	return problems, warnings
}
