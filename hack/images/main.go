// Command images builds the container images of the e2e cluster without Docker or a registry.
//
// Each image is a single static (CGO_ENABLED=0) Go binary as one layer on an empty base, run as
// the numeric non-root user 65532, written as a docker-archive tarball to OUT/<name>.tar for
// `ctr -n k8s.io images import`. The images that make outbound HTTPS calls (the runtime and the
// operator) get a second layer with a CA bundle at /etc/ssl/certs/ca-certificates.crt, where Go's
// crypto/x509 looks for the system roots on Linux: Mozilla's root store as shipped in the
// golang.org/x/crypto/x509roots/fallback module (pinned in go.mod). The layers and config are
// deterministic (zero timestamps), so an unchanged binary gives the same image ID and
// re-importing it is a no-op.
//
// -extra-ca adds the PEM certificates of a file to that bundle: hack/cluster adds the CA that
// signs the e2e cluster's HTTPS services, so the runtime verifies them the way it verifies the real
// systems it calls (images for anything but a test cluster are built without it).
//
//	go run . [-root DIR] [-out DIR] [-extra-ca FILE] [IMAGE...]   (from hack/images; default: every image)
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
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// image is one image: the Go package to build (relative to the repository root) and its tag.
type image struct {
	tag    string
	pkg    string
	binary string
	// caBundle adds the CA bundle layer (CABundlePath), for images that call HTTPS servers.
	caBundle bool
}

var images = []image{
	{tag: "apiconnector-runtime:dev", pkg: "./runtime/cmd/apiconnector-runtime", binary: "apiconnector-runtime", caBundle: true},
	{tag: "apiconnector-operator:dev", pkg: ".", binary: "manager", caBundle: true},
	{tag: "apiconnector-pause:dev", pkg: "./hack/pause", binary: "pause"},
	{tag: "apiconnector-e2e-services:dev", pkg: "./hack/e2e/services", binary: "e2e-services"},
}

// user is the numeric user and group every image runs as (the runtime pods' runAsUser).
const user = "65532:65532"

// CABundlePath is where the CA bundle goes: the first file Go's crypto/x509 reads on Linux, and
// where Debian-based images (distroless static included) keep theirs.
const CABundlePath = "/etc/ssl/certs/ca-certificates.crt"

func main() {
	root := flag.String("root", "../..", "repository root (the root Go module)")
	out := flag.String("out", "../../bin/images", "output directory for <name>.tar")
	extraCA := flag.String("extra-ca", "", "PEM file of CA certificates to add to the CA bundle (test clusters only)")
	flag.Parse()
	if *extraCA != "" {
		data, err := os.ReadFile(*extraCA)
		if err != nil {
			fail(err)
		}
		if extraRoots, err = certificatesPEM(data); err != nil {
			fail(fmt.Errorf("-extra-ca %s: %w", *extraCA, err))
		}
	}
	want := map[string]bool{}
	for _, a := range flag.Args() {
		want[a] = true
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	for _, im := range images {
		if len(want) > 0 && !want[im.tag] && !want[im.binary] {
			continue
		}
		start := time.Now()
		file, id, err := build(*root, *out, im)
		if err != nil {
			fail(fmt.Errorf("%s: %w", im.tag, err))
		}
		fmt.Printf("%-32s %s %s (%s)\n", im.tag, file, id, time.Since(start).Round(time.Millisecond))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "images:", err)
	os.Exit(1)
}

func build(root, out string, im image) (string, string, error) {
	tmp, err := os.MkdirTemp("", "image-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, im.binary)
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin, im.pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("go build %s: %w", im.pkg, err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", "", err
	}
	img, err := assemble(im, data)
	if err != nil {
		return "", "", err
	}
	return write(out, im, img)
}

// write saves img as OUT/<binary>.tar tagged im.tag and returns the file and the image ID.
func write(out string, im image, img v1.Image) (string, string, error) {
	tag, err := name.NewTag(im.tag)
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

// assemble makes the image of im around its compiled binary: the binary's layer, the CA bundle's
// layer when im.caBundle, and a config that runs the binary as user.
func assemble(im image, binary []byte) (v1.Image, error) {
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
	for _, fs := range files {
		layerTar, err := layerTar(fs)
		if err != nil {
			return nil, err
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(layerTar)), nil
		})
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
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/" + im.binary}
	cf.Config.User = user
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/"}
	cf.Created = v1.Time{}
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
