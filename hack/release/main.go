// Command release writes a release's install manifest, Helm chart and checksums into DIST,
// around the images hack/images wrote there (DIST/images/<name>, OCI image layouts tagged with
// the version):
//
//   - DIST/install.yaml: config/default (CRD, RBAC, manager) with both images pinned by the
//     digest of their image index, through the same kustomize images: entries users write;
//   - DIST/apiconnector-operator-<X.Y.Z>.tgz: the Helm chart, packaged with Helm's own chartutil,
//     version X.Y.Z and appVersion vX.Y.Z, its image defaults pinned the same way;
//   - DIST/SHA256SUMS: the SHA-256 of every file under DIST, in sha256sum's format.
//
// Every file time in the chart archive is SOURCE_DATE_EPOCH (make release sets the commit's
// time), so the same commit and version give the same bytes. docs/release.md is the procedure.
//
//	go run ./hack/release -version vX.Y.Z [-registry ghcr.io/apiconnector] [-dist dist] [-check]
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
)

// The released images, by repository name (hack/images writes DIST/images/<name>).
const (
	operatorImage = "apiconnector-operator"
	runtimeImage  = "apiconnector-runtime"
)

// chartPath is the chart, relative to the repository root.
const chartPath = "config/charts/apiconnector-operator"

// release is one release's settings.
type release struct {
	root     string    // repository root
	dist     string    // output directory, holding images/ already
	version  string    // vX.Y.Z[-pre]
	registry string    // the images are <registry>/<name>
	created  time.Time // every file time in the chart archive
}

func main() {
	var r release
	flag.StringVar(&r.version, "version", "", "release version vX.Y.Z[-pre] (required)")
	flag.StringVar(&r.registry, "registry", "ghcr.io/apiconnector", "registry and path the images are published under")
	flag.StringVar(&r.dist, "dist", "dist", "output directory, with the images hack/images wrote in images/")
	flag.StringVar(&r.root, "root", ".", "repository root")
	check := flag.Bool("check", false, "only check that -version can be a release version")
	flag.Parse()
	if _, err := chartVersion(r.version); err != nil || *check {
		if err != nil {
			fail(err)
		}
		return
	}
	epoch, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	if err != nil {
		fail(fmt.Errorf("SOURCE_DATE_EPOCH %q: want the commit's time in seconds (make release sets it)", os.Getenv("SOURCE_DATE_EPOCH")))
	}
	r.created = time.Unix(epoch, 0).UTC()
	refs, err := r.write()
	if err != nil {
		fail(err)
	}
	for _, ref := range refs {
		fmt.Println(ref)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "release:", err)
	os.Exit(1)
}

// write writes install.yaml, the chart and SHA256SUMS, and returns the pinned image references.
func (r release) write() ([]string, error) {
	chartVersion, err := chartVersion(r.version)
	if err != nil {
		return nil, err
	}
	pinned := map[string]string{}
	for _, name := range []string{operatorImage, runtimeImage} {
		digest, err := taggedDigest(filepath.Join(r.dist, "images", name), r.version)
		if err != nil {
			return nil, err
		}
		pinned[name] = digest
	}
	install, err := r.installYAML(pinned)
	if err != nil {
		return nil, fmt.Errorf("install.yaml: %w", err)
	}
	if err := os.WriteFile(filepath.Join(r.dist, "install.yaml"), install, 0o644); err != nil {
		return nil, err
	}
	if err := r.packageChart(chartVersion, pinned); err != nil {
		return nil, fmt.Errorf("chart: %w", err)
	}
	if err := writeSums(r.dist); err != nil {
		return nil, err
	}
	return []string{r.ref(operatorImage, pinned), r.ref(runtimeImage, pinned)}, nil
}

// ref is the pinned reference of an image: <registry>/<name>:<version>@<digest>.
func (r release) ref(name string, pinned map[string]string) string {
	return r.registry + "/" + name + ":" + r.version + "@" + pinned[name]
}

// chartVersion is the chart version of a release version: vX.Y.Z[-pre] without the v, which
// Helm requires to be a semantic version. Build metadata (+...) cannot be an image tag.
func chartVersion(version string) (string, error) {
	v, ok := strings.CutPrefix(version, "v")
	if ok {
		if sv, err := semver.StrictNewVersion(v); err == nil && sv.Metadata() == "" {
			return v, nil
		}
	}
	return "", fmt.Errorf("version %q: a release needs vMAJOR.MINOR.PATCH[-PRERELEASE] (semantic versioning, e.g. v1.2.3 or v1.3.0-rc.1)", version)
}

// taggedDigest is the digest of the image index the OCI image layout in dir tags version.
func taggedDigest(dir, version string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return "", fmt.Errorf("%s: %w (build the images first: make release builds them with hack/images -oci)", dir, err)
	}
	var index struct {
		Manifests []struct {
			MediaType   string            `json:"mediaType"`
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &index); err != nil {
		return "", fmt.Errorf("%s/index.json: %w", dir, err)
	}
	for _, m := range index.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == version && m.MediaType == "application/vnd.oci.image.index.v1+json" {
			return m.Digest, nil
		}
	}
	return "", fmt.Errorf("%s holds no image index tagged %s (built for another version?)", dir, version)
}

// installYAML renders config/default with an overlay whose images: entries pin both images, the
// way a user's overlay would (config/manager/kustomizeconfig.yaml makes them reach the runtime
// image too).
func (r release) installYAML(pinned map[string]string) ([]byte, error) {
	overlay, err := os.MkdirTemp("", "release-overlay-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(overlay)
	base, err := filepath.Abs(filepath.Join(r.root, "config", "default"))
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(overlay, base) // kustomize takes bases by relative path only
	if err != nil {
		return nil, err
	}
	k := "resources:\n- " + filepath.ToSlash(rel) + "\nimages:\n"
	for _, name := range []string{operatorImage, runtimeImage} {
		k += fmt.Sprintf("- name: %s\n  newName: %s/%s\n  newTag: %s\n  digest: %s\n", name, r.registry, name, r.version, pinned[name])
	}
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		return nil, err
	}
	// Namespace and CRD first, as `kustomize build` and `kubectl apply -k` order them: kubectl
	// apply -f creates objects in file order.
	opts := krusty.MakeDefaultOptions()
	opts.Reorder = krusty.ReorderOptionLegacy
	res, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), overlay)
	if err != nil {
		return nil, err
	}
	out, err := res.AsYaml()
	if err != nil {
		return nil, err
	}
	for _, name := range []string{operatorImage, runtimeImage} {
		if !bytes.Contains(out, []byte(r.ref(name, pinned))) {
			return nil, fmt.Errorf("the rendered manifests do not pin %s: a new reference to it that kustomize's images: entries miss?", name)
		}
		if bytes.Contains(out, []byte(name+":dev")) {
			return nil, fmt.Errorf("the rendered manifests still refer to %s:dev", name)
		}
	}
	header := fmt.Sprintf("# apiconnector-operator %s: CRDs, RBAC and the operator in namespace apiconnector-system.\n"+
		"#   kubectl apply --server-side -f install.yaml\n", r.version)
	return append([]byte(header), out...), nil
}

// packageChart packages the chart with version and appVersion set and its image defaults pinned,
// as DIST/<name>-<version>.tgz.
func (r release) packageChart(version string, pinned map[string]string) error {
	ch, err := loader.Load(filepath.Join(r.root, chartPath))
	if err != nil {
		return err
	}
	ch.Metadata.Version, ch.Metadata.AppVersion = version, r.version
	if err := pinValues(ch, map[string]string{"image": operatorImage, "runtimeImage": runtimeImage}, func(name string) (string, string) {
		// The templates join repository and tag with ':'; a tag@digest reference pins the digest
		// and still shows the version.
		return r.registry + "/" + name, r.version + "@" + pinned[name]
	}); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "release-chart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	saved, err := chartutil.Save(ch, tmp)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(saved)
	if err != nil {
		return err
	}
	if b, err = clampTimes(b, r.created); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.dist, filepath.Base(saved)), b, 0o644)
}

// pinValues sets <key>.repository and <key>.tag of the chart's values.yaml for each key, keeping
// its comments (the packaged chart ships them), and the loaded values to match.
func pinValues(ch *chart.Chart, keys map[string]string, ref func(name string) (string, string)) error {
	i := slices.IndexFunc(ch.Raw, func(f *common.File) bool { return f.Name == chartutil.ValuesfileName })
	if i < 0 {
		return errors.New("the chart has no values.yaml")
	}
	doc, err := kyaml.Parse(string(ch.Raw[i].Data))
	if err != nil {
		return err
	}
	for key, name := range keys {
		repo, tag := ref(name)
		for field, value := range map[string]string{"repository": repo, "tag": tag} {
			if err := doc.PipeE(kyaml.Lookup(key), kyaml.SetField(field, kyaml.NewStringRNode(value))); err != nil {
				return fmt.Errorf("values.yaml %s.%s: %w", key, field, err)
			}
			m, ok := ch.Values[key].(map[string]any)
			if !ok {
				return fmt.Errorf("values.yaml has no map %s", key)
			}
			m[field] = value
		}
	}
	s, err := doc.String()
	if err != nil {
		return err
	}
	ch.Raw[i].Data = []byte(s)
	return nil
}

// clampTimes rewrites a .tgz with every entry's time set to t (Helm stamps the packaging time),
// keeping the gzip header Helm writes.
func clampTimes(tgz []byte, t time.Time) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Header.Extra, zw.Header.Comment = zr.Header.Extra, zr.Header.Comment
	tr, tw := tar.NewReader(zr), tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		h.ModTime, h.AccessTime, h.ChangeTime = t, time.Time{}, time.Time{}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// writeSums writes DIST/SHA256SUMS: the SHA-256 of every other file under dist, by path, in the
// format `sha256sum -c` reads.
func writeSums(dist string) error {
	var lines []string
	err := filepath.WalkDir(dist, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dist, path)
		if err != nil || rel == "SHA256SUMS" {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		lines = append(lines, hex.EncodeToString(sum[:])+"  "+filepath.ToSlash(rel)+"\n")
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(lines, func(a, b string) int { return strings.Compare(a[66:], b[66:]) })
	return os.WriteFile(filepath.Join(dist, "SHA256SUMS"), []byte(strings.Join(lines, "")), 0o644)
}
