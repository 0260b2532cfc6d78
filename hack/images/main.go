// Command images builds the project's container images without Docker or a registry.
//
// Each image is a single static (CGO_ENABLED=0) Go binary as one layer on an empty base, run as
// the numeric non-root user 65532. The images that make outbound HTTPS calls (the runtime and the
// operator) get a second layer with a CA bundle at /etc/ssl/certs/ca-certificates.crt, where Go's
// crypto/x509 looks for the system roots on Linux: Mozilla's root store as shipped in the
// golang.org/x/crypto/x509roots/fallback module (pinned in go.mod). Layers and configs are
// deterministic (zero file times, the commit's time as the creation time), so the same commit
// and version give the same digests.
//
// Every binary is stamped with the version (-version, default `git describe --tags --always
// --dirty`), reported by its --version flag and apiconnector_build_info metric, and every image
// carries the org.opencontainers.image.* labels (version, revision, source, licenses, created).
//
// Without -oci it builds the e2e cluster's images for the host's architecture as docker-archive
// tarballs OUT/<binary>.tar tagged <name>:dev, for `ctr -n k8s.io images import`. -extra-ca adds
// the PEM certificates of a file to the CA bundle of the images: hack/cluster adds the CA that
// signs the e2e cluster's HTTPS services to its tarballs and to the release it builds with -oci and
// pushes to its registry, so the runtime verifies them the way it verifies the real systems it
// calls. A release's SBOM files (-sbom) are never written for such a build.
//
// With -oci DIR it builds the released images (the operator and the runtime) for every platform
// of -platforms as OCI image indexes, each written as an OCI image layout DIR/<name> tagged with
// the version, with an SPDX 2.3 SBOM of each platform's binary attached as an OCI referrer, and
// the same SBOMs as files in -sbom. -push REGISTRY then pushes the layouts to REGISTRY/<name>
// (with -build=false only that: what an earlier run wrote).
//
//	go run . [-root DIR] [-out DIR] [-extra-ca FILE] [IMAGE...]            (from hack/images)
//	go run . -oci DIR [-sbom DIR] [-version V] [-platforms P,...] [-push REGISTRY]
//	go run . -oci DIR -push REGISTRY -build=false
package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// image is one image: its repository name, the Go package to build (relative to the repository
// root) and the file name of the binary.
type image struct {
	name        string
	description string
	pkg         string
	binary      string
	// caBundle adds the CA bundle layer (CABundlePath), for images that call HTTPS servers.
	caBundle bool
	// release: built by -oci (multi-platform, SBOM, pushed); the others serve the e2e cluster only.
	release bool
}

var images = []image{
	{name: "apiconnector-runtime", description: "Serves Entra ID API connectors declared as APIConnector resources.",
		pkg: "./runtime/cmd/apiconnector-runtime", binary: "apiconnector-runtime", caBundle: true, release: true},
	{name: "apiconnector-operator", description: "Reconciles APIConnector resources into runtime Deployments, Services and routes.",
		pkg: ".", binary: "manager", caBundle: true, release: true},
	{name: "apiconnector-pause", description: "Pod sandbox of the e2e cluster.", pkg: "./hack/pause", binary: "pause"},
	{name: "apiconnector-e2e-services", description: "Test services of the e2e suite.", pkg: "./hack/e2e/services", binary: "e2e-services"},
}

// devTag is the tag of the e2e cluster's tarballs, which config/default refers to.
const devTag = "dev"

// user is the numeric user and group every image runs as (the runtime pods' runAsUser).
const user = "65532:65532"

// CABundlePath is where the CA bundle goes: the first file Go's crypto/x509 reads on Linux, and
// where Debian-based images (distroless static included) keep theirs.
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

// versionSymbol is the variable the binaries report as their version (internal/version.Symbol).
const versionSymbol = "github.com/apiconnector/operator/internal/version.version"

// Where the source lives and under which license: the images' labels and the SBOMs.
const (
	sourceURL = "https://github.com/apiconnector/operator"
	license   = "Apache-2.0"
)

func main() {
	root := flag.String("root", "../..", "repository root (the root Go module)")
	out := flag.String("out", "../../bin/images", "output directory for <binary>.tar (without -oci)")
	extraCA := flag.String("extra-ca", "", "PEM file of CA certificates to add to the CA bundle (test clusters only)")
	version := flag.String("version", "", "version stamped into the binaries, labels and tags (default: git describe --tags --always --dirty)")
	ociDir := flag.String("oci", "", "build the released images as OCI image layouts DIR/<name> instead of tarballs")
	sbomDir := flag.String("sbom", "", "with -oci: also write each SBOM to DIR/<name>_<version>_<os>_<arch>.spdx.json")
	platforms := flag.String("platforms", "linux/amd64,linux/arm64", "with -oci: comma-separated platforms")
	push := flag.String("push", "", "with -oci: push the layouts to REGISTRY/<name>:<version>, SBOMs as OCI referrers (credentials as docker login/crane auth login store them)")
	build := flag.Bool("build", true, "with -oci: build the layouts (false: push what DIR holds)")
	flag.Parse()
	if *extraCA != "" && *sbomDir != "" {
		fail(fmt.Errorf("-extra-ca is for test clusters, not for released images (-sbom)"))
	}
	if *extraCA != "" {
		data, err := os.ReadFile(*extraCA)
		if err != nil {
			fail(err)
		}
		if extraRoots, err = certificatesPEM(data); err != nil {
			fail(fmt.Errorf("-extra-ca %s: %w", *extraCA, err))
		}
	}
	if *ociDir == "" {
		if *push != "" || *sbomDir != "" {
			fail(fmt.Errorf("-push and -sbom need -oci"))
		}
		s, err := stampFromGit(*root, *version)
		if err != nil {
			fail(err)
		}
		if err := buildTarballs(*root, *out, s, flag.Args()); err != nil {
			fail(err)
		}
		return
	}
	if *build {
		s, err := stampFromGit(*root, *version)
		if err != nil {
			fail(err)
		}
		ps, err := parsePlatforms(*platforms)
		if err != nil {
			fail(err)
		}
		for _, im := range images {
			if !im.release {
				continue
			}
			start := time.Now()
			digest, err := buildRelease(*root, *ociDir, *sbomDir, im, ps, s)
			if err != nil {
				fail(fmt.Errorf("%s: %w", im.name, err))
			}
			fmt.Printf("%-26s %s %s@%s (%s)\n", im.name, filepath.Join(*ociDir, im.name), s.version, digest, time.Since(start).Round(time.Millisecond))
		}
	}
	if *push != "" {
		for _, im := range images {
			if !im.release {
				continue
			}
			ref, err := pushLayout(filepath.Join(*ociDir, im.name), *push+"/"+im.name)
			if err != nil {
				fail(fmt.Errorf("push %s: %w", im.name, err))
			}
			fmt.Println("pushed", ref)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "images:", err)
	os.Exit(1)
}

// buildTarballs builds the e2e cluster's images (those named in want, or all) for the host's
// architecture as OUT/<binary>.tar tagged <name>:dev.
func buildTarballs(root, out string, s stamp, want []string) error {
	wanted := map[string]bool{}
	for _, a := range want {
		wanted[a] = true
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	host := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	for _, im := range images {
		tag := im.name + ":" + devTag
		if len(wanted) > 0 && !wanted[tag] && !wanted[im.name] && !wanted[im.binary] {
			continue
		}
		start := time.Now()
		bin, err := goBuild(root, im, host, s.version)
		if err != nil {
			return fmt.Errorf("%s: %w", tag, err)
		}
		img, err := assemble(im, bin, host, s, false)
		if err != nil {
			return fmt.Errorf("%s: %w", tag, err)
		}
		file, id, err := write(out, im, img)
		if err != nil {
			return fmt.Errorf("%s: %w", tag, err)
		}
		fmt.Printf("%-32s %s %s (%s)\n", tag, file, id, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// goBuild compiles im for p, stamped with version, and returns the binary. -trimpath, no VCS
// stamp and the default instruction set levels (whatever GOAMD64 or GOARM64 the environment sets)
// make the binary depend only on the source, the Go release and the version.
func goBuild(root string, im image, p v1.Platform, version string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, im.binary)
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -X "+versionSymbol+"="+version, "-o", bin, im.pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture, "GOARM=", "GOAMD64=", "GOARM64=")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build %s for %s: %w", im.pkg, p, err)
	}
	return os.ReadFile(bin)
}

// write saves img as OUT/<binary>.tar tagged <name>:dev and returns the file and the image ID.
func write(out string, im image, img v1.Image) (string, string, error) {
	tag, err := name.NewTag(im.name + ":" + devTag)
	if err != nil {
		return "", "", err
	}
	id, err := img.ConfigName()
	if err != nil {
		return "", "", err
	}
	file := filepath.Join(out, im.binary+".tar")
	if err := tarball.WriteToFile(file+".tmp", tag, img); err != nil {
		return "", "", err
	}
	return file, id.String(), os.Rename(file+".tmp", file)
}

// assemble makes the image of im for platform p around its compiled binary: the binary's layer,
// the CA bundle's layer when im.caBundle, and a config that runs the binary as user, labelled
// with s. oci selects OCI media types (released images) over Docker's (the e2e tarballs, as
// before).
func assemble(im image, binary []byte, p v1.Platform, s stamp, oci bool) (v1.Image, error) {
	files := [][]tarFile{{{path: "/" + im.binary, mode: 0o755, data: binary}}}
	if im.caBundle {
		pemData, err := caBundle()
		if err != nil {
			return nil, err
		}
		files = append(files, []tarFile{
			{path: "/etc/", dir: true}, {path: "/etc/ssl/", dir: true}, {path: "/etc/ssl/certs/", dir: true},
			{path: CABundlePath, mode: 0o644, data: pemData},
		})
	}
	img := empty.Image
	layerType := types.DockerLayer
	if oci {
		img = mutate.MediaType(mutate.ConfigMediaType(img, types.OCIConfigJSON), types.OCIManifestSchema1)
		layerType = types.OCILayer
	}
	for _, fs := range files {
		layerTar, err := layerTar(fs)
		if err != nil {
			return nil, err
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(layerTar)), nil
		}, tarball.WithMediaType(layerType))
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = p.OS, p.Architecture
	cf.Config.Entrypoint = []string{"/" + im.binary}
	cf.Config.User = user
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/"}
	cf.Config.Labels = s.labels(im)
	cf.Created = v1.Time{Time: s.created}
	return mutate.ConfigFile(img, cf)
}

// extraRoots is PEM appended to the CA bundle (-extra-ca).
var extraRoots []byte

// caBundle is Mozilla's root store (NSS, via x509roots/fallback) as PEM, then extraRoots. Roots
// that carry a constraint a PEM file cannot express (a distrust-after date for newly issued
// certificates) are left out rather than trusted without it.
func caBundle() ([]byte, error) {
	var b bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return nil, err
		}
	}
	if b.Len() == 0 {
		return nil, fmt.Errorf("the x509roots/fallback bundle has no unconstrained roots")
	}
	b.Write(extraRoots)
	return b.Bytes(), nil
}

// certificatesPEM checks that data is one or more PEM certificates (and nothing else) and returns
// them re-encoded.
func certificatesPEM(data []byte) ([]byte, error) {
	var b bytes.Buffer
	n := 0
	for rest := bytes.TrimSpace(data); len(rest) > 0; rest = bytes.TrimSpace(rest) {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return nil, fmt.Errorf("not PEM after %d certificates", n)
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return nil, err
		}
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}); err != nil {
			return nil, err
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("no certificates")
	}
	return b.Bytes(), nil
}

// tarFile is one entry of a layer, owned by root (readable by the image user).
type tarFile struct {
	path string
	dir  bool
	mode int64
	data []byte
}

func layerTar(files []tarFile) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		h := &tar.Header{Name: f.path[1:], Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if f.dir {
			h.Mode, h.Typeflag = 0o755, tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// parsePlatforms parses linux/<arch>,... (architectures without variants: GOARCH alone says how
// to build for them).
func parsePlatforms(s string) ([]v1.Platform, error) {
	var ps []v1.Platform
	for _, f := range strings.Split(s, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(f))
		if err != nil || p.OS != "linux" || p.Architecture == "" || p.Variant != "" {
			return nil, fmt.Errorf("-platforms: %q is not linux/<arch>", f)
		}
		ps = append(ps, *p)
	}
	return ps, nil
}
