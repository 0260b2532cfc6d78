package v1alpha1_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/rules"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

func docFiles(t *testing.T) []string {
	t.Helper()
	files := []string{filepath.Join("..", "..", "README.md")}
	for _, pattern := range []string{"*.md", "*/*.md"} {
		m, err := filepath.Glob(filepath.Join("..", "..", "docs", pattern))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	return files
}

// Every APIConnector shown in the README or docs/ is accepted by the real API server and compiles
// with the rules engine, so the documentation cannot teach something that does not work.
func TestDocSnippetsWork(t *testing.T) {
	checked := 0
	for _, file := range docFiles(t) {
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range yamlBlock.FindAllSubmatch(body, -1) {
			snippet := m[1]
			if !bytes.Contains(snippet, []byte("kind: APIConnector")) {
				continue
			}
			name := fmt.Sprintf("%s#%d", strings.TrimPrefix(file, "../../"), i)
			t.Run(name, func(t *testing.T) {
				checked++
				bundle, err := connfile.Parse(name, snippet)
				if err != nil {
					t.Fatalf("the runtime cannot load the snippet: %v", err)
				}
				for _, c := range bundle.Connectors {
					if _, err := rules.Compile(c, rules.Options{ResolveList: bundle.ListResolver(c.Namespace)}); err != nil {
						t.Errorf("connector %s does not compile: %v", c.Name, err)
					}
				}
				dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(snippet), 4096)
				for {
					var obj map[string]any
					if err := dec.Decode(&obj); err != nil {
						break
					}
					if obj["kind"] != "APIConnector" {
						continue
					}
					u := &unstructured.Unstructured{Object: obj}
					if u.GetNamespace() == "" {
						u.SetNamespace("default")
					}
					ensureNamespace(t, u.GetNamespace())
					if err := k8sClient.Create(context.Background(), u, client.DryRunAll); err != nil {
						t.Errorf("the API server rejects connector %s: %v", u.GetName(), err)
					}
				}
			})
		}
	}
	if checked < 6 {
		t.Errorf("only %d documented connectors found; the walk over README.md and docs/ is broken", checked)
	}
}

// Each scenario page shows its sample and its cases verbatim.
func TestScenarioPagesShowTheSamples(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join("..", "..", "docs", "scenarios", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pages) < 5 {
		t.Fatalf("found %d scenario pages, want 5", len(pages))
	}
	for _, page := range pages {
		name := strings.TrimSuffix(filepath.Base(page), ".md")
		body, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		blocks := yamlBlock.FindAllSubmatch(body, -1)
		for i, src := range []string{
			filepath.Join("..", "..", "config", "samples", name+".yaml"),
			filepath.Join("..", "..", "config", "samples", "tests", name+".cases.yaml"),
		} {
			want, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if i >= len(blocks) || strings.TrimSpace(string(blocks[i][1])) != strings.TrimSpace(string(want)) {
				t.Errorf("%s: yaml block %d is not the current %s; copy it again", page, i+1, src)
			}
		}
	}
}
