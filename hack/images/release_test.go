package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"
)

var platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// testImage is a released image around the smallest main package of the repository.
var testImage = image{name: "apiconnector-pause", description: "test", pkg: "./hack/pause", binary: "pause", caBundle: true, release: true}

// The SBOM of a binary lists every Go module of its build info with the version it was built
// with, the standard library and the binary's checksum, and is SPDX 2.3 as the JSON schema of the
// specification constrains it (checked field by field below) and as the SPDX Go library reads
// and validates it. The binary is this test's own, built from a real module graph.
func TestSBOM(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	if len(bi.Deps) < 5 {
		t.Fatalf("the test binary names %d modules; the test needs a real module graph", len(bi.Deps))
	}
	p := v1.Platform{OS: "linux", Architecture: "arm64"}
	raw, err := sbom(testImage, bin, p, testStamp)
	if err != nil {
		t.Fatal(err)
	}
	checkSPDX23(t, raw)

	doc, err := spdxjson.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("the SPDX library cannot read it back: %v", err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Fatalf("the SPDX library finds it invalid: %v", err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.CreationInfo.Created != "2023-11-14T22:13:20Z" {
		t.Errorf("version %q created %q", doc.SPDXVersion, doc.CreationInfo.Created)
	}
	described, err := spdxlib.GetDescribedPackageIDs(doc)
	if err != nil || len(described) != 1 || described[0] != "Image" {
		t.Errorf("the document describes %v, %v; want the image", described, err)
	}
	byName := map[string]string{}
	purls := map[string]bool{}
	var binarySum string
	for _, pkg := range doc.Packages {
		byName[pkg.PackageName] = pkg.PackageVersion
		for _, r := range pkg.PackageExternalReferences {
			purls[r.Locator] = true
		}
		if pkg.PackageSPDXIdentifier == "Binary" {
			binarySum = pkg.PackageChecksums[0].Value
		}
	}
	if sum := sha256.Sum256(bin); binarySum != hex.EncodeToString(sum[:]) {
		t.Errorf("binary checksum %s, want the SHA-256 of the binary", binarySum)
	}
	if byName[bi.Path] != testStamp.version || byName["stdlib"] != bi.GoVersion || byName[caBundleModule] == "" || byName[caBundleModule] == "NOASSERTION" {
		t.Errorf("binary %q, stdlib %q, CA bundle %q", byName[bi.Path], byName["stdlib"], byName[caBundleModule])
	}
	dependsOn := map[string]bool{}
	for _, r := range doc.Relationships {
		if r.RefA.ElementRefID == "Binary" && r.Relationship == "DEPENDS_ON" {
			dependsOn[string(r.RefB.ElementRefID)] = true
		}
	}
	for _, d := range bi.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		if byName[m.Path] != m.Version || !purls["pkg:golang/"+m.Path+"@"+m.Version] {
			t.Errorf("module %s %s: listed as %q", m.Path, m.Version, byName[m.Path])
		}
	}
	if len(dependsOn) != len(bi.Deps)+1 {
		t.Errorf("the binary depends on %d packages, want the %d modules and the standard library", len(dependsOn), len(bi.Deps))
	}
}

// checkSPDX23 checks the constraints the SPDX 2.3 JSON schema puts on what sbom writes: the
// required fields, the identifier and date patterns, the enumerations, and that every
// relationship names an element of the document.
func checkSPDX23(t *testing.T, raw []byte) {
	t.Helper()
	type checksum struct{ Algorithm, ChecksumValue string }
	var d struct {
		SPDXVersion, DataLicense, SPDXID, Name, DocumentNamespace string
		CreationInfo                                              struct {
			Created  string
			Creators []string
		}
		Packages []struct {
			SPDXID, Name, DownloadLocation, PrimaryPackagePurpose string
			Checksums                                             []checksum
			ExternalRefs                                          []struct{ ReferenceCategory, ReferenceType, ReferenceLocator string }
		}
		Relationships []struct{ SpdxElementId, RelatedSpdxElement, RelationshipType string }
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	date := regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$`)
	id := regexp.MustCompile(`^SPDXRef-[a-zA-Z0-9.-]+$`)
	creator := regexp.MustCompile(`^(Person|Organization|Tool): \S`)
	ns, err := url.Parse(d.DocumentNamespace)
	if d.SPDXVersion != "SPDX-2.3" || d.DataLicense != "CC0-1.0" || d.SPDXID != "SPDXRef-DOCUMENT" || d.Name == "" ||
		err != nil || !ns.IsAbs() || strings.Contains(d.DocumentNamespace, "#") || !date.MatchString(d.CreationInfo.Created) || len(d.CreationInfo.Creators) == 0 {
		t.Errorf("document fields: %+v", d)
	}
	for _, c := range d.CreationInfo.Creators {
		if !creator.MatchString(c) {
			t.Errorf("creator %q", c)
		}
	}
	ids := map[string]bool{"SPDXRef-DOCUMENT": true}
	purposes := []string{"APPLICATION", "FRAMEWORK", "LIBRARY", "CONTAINER", "DEVICE", "FIRMWARE", "SOURCE", "ARCHIVE", "FILE", "INSTALL", "OTHER"}
	for _, p := range d.Packages {
		if !id.MatchString(p.SPDXID) || ids[p.SPDXID] || p.Name == "" || p.DownloadLocation == "" || !slices.Contains(purposes, p.PrimaryPackagePurpose) {
			t.Errorf("package %+v", p)
		}
		ids[p.SPDXID] = true
		for _, c := range p.Checksums {
			if c.Algorithm != "SHA256" || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(c.ChecksumValue) {
				t.Errorf("%s checksum %+v", p.SPDXID, c)
			}
		}
		for _, r := range p.ExternalRefs {
			if r.ReferenceCategory != "PACKAGE-MANAGER" || r.ReferenceType != "purl" || !strings.HasPrefix(r.ReferenceLocator, "pkg:golang/") || strings.ContainsAny(r.ReferenceLocator, " \t") {
				t.Errorf("%s external reference %+v", p.SPDXID, r)
			}
		}
	}
	for _, r := range d.Relationships {
		if !ids[r.SpdxElementId] || !ids[r.RelatedSpdxElement] || !slices.Contains([]string{"DESCRIBES", "CONTAINS", "DEPENDS_ON"}, r.RelationshipType) {
			t.Errorf("relationship %+v", r)
		}
	}
}

// buildTestRelease builds testImage for both platforms into a fresh layout and SBOM directory.
func buildTestRelease(t *testing.T, s stamp) (string, string, v1.Hash) {
	t.Helper()
	oci, sboms := t.TempDir(), t.TempDir()
	digest, err := buildRelease("../..", oci, sboms, testImage, platforms, s)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(oci, testImage.name), sboms, digest
}

// A release build is an OCI image layout holding one index tagged with the version, with an image
// per platform (the binary compiled for that architecture and stamped with the version, the CA
// bundle, user 65532, the OCI labels) and, as referrers of each image, its SBOM, also written as a
// file. Built again from the same commit and version, every byte is the same; another version
// gives another index.
func TestReleaseLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles")
	}
	dir, sbomDir, digest := buildTestRelease(t, testStamp)

	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1+len(platforms) || tm.Manifests[0].Digest != digest || tm.Manifests[0].Annotations[refNameAnnotation] != "v1.2.3" {
		t.Fatalf("layout index.json: %+v", tm.Manifests)
	}
	idx, err := top.ImageIndex(digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != "application/vnd.oci.image.index.v1+json" || im.Annotations["org.opencontainers.image.source"] != sourceURL || len(im.Manifests) != len(platforms) {
		t.Fatalf("image index: %+v", im)
	}
	subjects := map[v1.Hash]v1.Descriptor{}
	for _, r := range tm.Manifests[1:] {
		if r.ArtifactType != sbomMediaType {
			t.Errorf("referrer %s has artifactType %q", r.Digest, r.ArtifactType)
		}
		art, err := top.Image(r.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := art.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject == nil || m.Config.MediaType != "application/vnd.oci.empty.v1+json" || len(m.Layers) != 1 || m.Layers[0].MediaType != sbomMediaType {
			t.Fatalf("SBOM manifest %+v", m)
		}
		subjects[m.Subject.Digest] = m.Layers[0]
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for i, want := range platforms {
		d := im.Manifests[i]
		if d.Platform == nil || d.Platform.String() != want.String() || d.MediaType != "application/vnd.oci.image.manifest.v1+json" {
			t.Fatalf("manifest %d: %+v", i, d)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		labels := cf.Config.Labels
		if cf.Architecture != want.Architecture || cf.OS != "linux" || cf.Config.User != "65532:65532" || !cf.Created.Time.Equal(testStamp.created) ||
			labels["org.opencontainers.image.version"] != "v1.2.3" || labels["org.opencontainers.image.revision"] != testStamp.revision ||
			labels["org.opencontainers.image.licenses"] != "Apache-2.0" || labels["org.opencontainers.image.source"] != sourceURL {
			t.Errorf("%s config: %+v", want, cf)
		}
		files := extract(t, img)
		if _, ok := files[CABundlePath]; !ok {
			t.Errorf("%s lacks the CA bundle", want)
		}
		f, err := elf.NewFile(bytes.NewReader(files["/pause"]))
		if err != nil || f.Machine != machines[want.Architecture] {
			t.Fatalf("%s: /pause is not an ELF binary for %s: %v", want, want.Architecture, err)
		}
		bi, err := buildinfo.Read(bytes.NewReader(files["/pause"]))
		if err != nil {
			t.Fatal(err)
		}
		// (With -trimpath Go does not record -ldflags; the binaries' own tests check the stamp.)
		if !slices.Contains(bi.Settings, debug.BuildSetting{Key: "GOARCH", Value: want.Architecture}) || !slices.Contains(bi.Settings, debug.BuildSetting{Key: "CGO_ENABLED", Value: "0"}) {
			t.Errorf("%s build settings %v", want, bi.Settings)
		}
		layer, ok := subjects[d.Digest]
		if !ok {
			t.Fatalf("no SBOM refers to the %s image %s", want, d.Digest)
		}
		sbomFile := "apiconnector-pause_v1.2.3_linux_" + want.Architecture + ".spdx.json"
		file, err := os.ReadFile(filepath.Join(sbomDir, sbomFile))
		if err != nil {
			t.Fatal(err)
		}
		if layer.Digest.Hex != hex.EncodeToString(sha(file)) || layer.Annotations["org.opencontainers.image.title"] != sbomFile {
			t.Errorf("the %s SBOM file differs from the attached one (%+v)", want, layer)
		}
		checkSPDX23(t, file)
		if !bytes.Contains(file, []byte(`"checksumValue": "`+hex.EncodeToString(sha(files["/pause"]))+`"`)) {
			t.Errorf("the %s SBOM does not name the checksum of the image's binary", want)
		}
	}

	again, againSBOMs, digest2 := buildTestRelease(t, testStamp)
	if digest2 != digest || !sameTree(t, dir, again) || !sameTree(t, sbomDir, againSBOMs) {
		t.Errorf("a second build of the same commit and version differs: %s, then %s", digest, digest2)
	}
	other := testStamp
	other.version = "v1.2.4"
	if _, _, d := buildTestRelease(t, other); d == digest {
		t.Error("another version gives the same index")
	}
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// sameTree reports whether directories a and b hold the same files with the same bytes.
func sameTree(t *testing.T, a, b string) bool {
	t.Helper()
	read := func(root string) map[string]string {
		m := map[string]string{}
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			rel, _ := filepath.Rel(root, path)
			m[rel] = string(data)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ma, mb := read(a), read(b)
	if len(ma) == 0 || len(ma) != len(mb) {
		return false
	}
	for k, v := range ma {
		if mb[k] != v {
			t.Logf("%s differs", k)
			return false
		}
	}
	return true
}

// extract is the flattened filesystem of img.
func extract(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files["/"+h.Name] = data
	}
}

// Pushing a layout puts the index under the version tag and the SBOMs where `oras discover` and
// go-containerregistry's remote.Referrers find them: through the registry's referrers API, or, for
// a registry without one, through the referrers tag the OCI distribution specification defines.
// The registry is go-containerregistry's own, on a loopback port.
func TestPushLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles")
	}
	dir, _, digest := buildTestRelease(t, testStamp)
	for _, referrersAPI := range []bool{true, false} {
		t.Run(map[bool]string{true: "referrers API", false: "referrers tag"}[referrersAPI], func(t *testing.T) {
			srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(referrersAPI), registry.Logger(log.New(io.Discard, "", 0))))
			defer srv.Close()
			repo := strings.TrimPrefix(srv.URL, "http://") + "/apiconnector/apiconnector-pause"
			ref, err := pushLayout(dir, repo)
			if err != nil {
				t.Fatal(err)
			}
			if want := repo + ":v1.2.3@" + digest.String(); ref != want {
				t.Errorf("pushed %s, want %s", ref, want)
			}
			tag, err := name.NewTag(repo + ":v1.2.3")
			if err != nil {
				t.Fatal(err)
			}
			idx, err := remote.Index(tag)
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := idx.Digest(); d != digest {
				t.Fatalf("the registry's v1.2.3 is %s, want %s", d, digest)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range im.Manifests {
				// Not filtered by artifactType: go-containerregistry's test registry derives it
				// from the config's media type, not from the manifest's artifactType.
				refs, err := remote.Referrers(tag.Context().Digest(m.Digest.String()))
				if err != nil {
					t.Fatal(err)
				}
				rm, err := refs.IndexManifest()
				if err != nil {
					t.Fatal(err)
				}
				if len(rm.Manifests) != 1 {
					t.Fatalf("referrers of the %s image: %+v", m.Platform, rm.Manifests)
				}
				art, err := remote.Image(tag.Context().Digest(rm.Manifests[0].Digest.String()))
				if err != nil {
					t.Fatal(err)
				}
				if am, err := art.Manifest(); err != nil || am.ArtifactType != sbomMediaType || am.Subject == nil || am.Subject.Digest != m.Digest {
					t.Fatalf("the %s referrer: %+v, %v", m.Platform, am, err)
				}
				layers, err := art.Layers()
				if err != nil {
					t.Fatal(err)
				}
				rc, err := layers[0].Compressed()
				if err != nil {
					t.Fatal(err)
				}
				doc, err := spdxjson.Read(rc)
				rc.Close()
				if err != nil || !strings.HasSuffix(doc.DocumentName, m.Platform.String()) {
					t.Errorf("the %s SBOM in the registry: %v, %v", m.Platform, doc, err)
				}
			}
		})
	}
}

// A version that cannot be an image tag is refused before anything is built; SOURCE_DATE_EPOCH
// sets the creation time.
func TestStamp(t *testing.T) {
	for _, bad := range []string{"v1 2", "-v1", "v1+build", strings.Repeat("x", 129)} {
		if _, err := stampFromGit("../..", bad); err == nil || !strings.Contains(err.Error(), "not an image tag") {
			t.Errorf("version %q: %v", bad, err)
		}
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	s, err := stampFromGit("../..", "v1.2.3-rc.1")
	if err != nil {
		t.Fatal(err)
	}
	if s.version != "v1.2.3-rc.1" || len(s.revision) != 40 || !s.created.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("stamp %+v", s)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := stampFromGit("../..", "v1.2.3"); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Errorf("a bad SOURCE_DATE_EPOCH: %v", err)
	}
}
