package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// stamp is what every image of one build is stamped and labelled with.
type stamp struct {
	version  string
	revision string    // the commit
	created  time.Time // the commit's time, or SOURCE_DATE_EPOCH
}

// tagPattern is what a version must look like to be an image tag (and a Helm appVersion).
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// stampFromGit stamps version (default: git describe --tags --always --dirty) with the commit of
// the work tree at root and its time; SOURCE_DATE_EPOCH (seconds) overrides the time.
func stampFromGit(root, version string) (stamp, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	s := stamp{version: version}
	var err error
	if s.version == "" {
		if s.version, err = git("describe", "--tags", "--always", "--dirty"); err != nil {
			return stamp{}, fmt.Errorf("%w (or pass -version)", err)
		}
	}
	if !tagPattern.MatchString(s.version) {
		return stamp{}, fmt.Errorf("version %q is not an image tag: letters, digits, '_', '.' and '-', at most 128 (e.g. v1.2.3)", s.version)
	}
	if s.revision, err = git("rev-parse", "HEAD"); err != nil {
		return stamp{}, err
	}
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		if epoch, err = git("log", "-1", "--format=%ct"); err != nil {
			return stamp{}, err
		}
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return stamp{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", epoch, err)
	}
	s.created = time.Unix(sec, 0).UTC()
	return s, nil
}

// labels are the image's org.opencontainers.image.* labels (and its index's annotations).
func (s stamp) labels(im image) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       im.name,
		"org.opencontainers.image.description": im.description,
		"org.opencontainers.image.version":     s.version,
		"org.opencontainers.image.revision":    s.revision,
		"org.opencontainers.image.source":      sourceURL,
		"org.opencontainers.image.licenses":    license,
		"org.opencontainers.image.created":     s.created.Format(time.RFC3339),
	}
}

// buildRelease builds im for every platform into one OCI image index, writes it as the OCI image
// layout DIR/<name> tagged s.version with each platform's SBOM attached as a referrer (and as a
// file in sbomDir when set), and returns the index's digest.
func buildRelease(root, ociDir, sbomDir string, im image, platforms []v1.Platform, s stamp) (v1.Hash, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var sboms []v1.Image
	for _, p := range platforms {
		bin, err := goBuild(root, im, p, s.version)
		if err != nil {
			return v1.Hash{}, err
		}
		img, art, err := platformImage(im, bin, p, s, sbomDir)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		sboms = append(sboms, art)
	}
	idx = mutate.Annotations(idx, s.labels(im)).(v1.ImageIndex)
	if err := writeLayout(filepath.Join(ociDir, im.name), idx, s.version, sboms); err != nil {
		return v1.Hash{}, err
	}
	return idx.Digest()
}

// platformImage is the image of im for p around bin and its SBOM as an artifact referring to it.
func platformImage(im image, bin []byte, p v1.Platform, s stamp, sbomDir string) (v1.Image, v1.Image, error) {
	img, err := assemble(im, bin, p, s, true)
	if err != nil {
		return nil, nil, err
	}
	doc, err := sbom(im, bin, p, s)
	if err != nil {
		return nil, nil, fmt.Errorf("SBOM: %w", err)
	}
	file := sbomFileName(im, p, s)
	if sbomDir != "" {
		if err := os.MkdirAll(sbomDir, 0o755); err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(filepath.Join(sbomDir, file), doc, 0o644); err != nil {
			return nil, nil, err
		}
	}
	desc, err := partial.Descriptor(img)
	if err != nil {
		return nil, nil, err
	}
	art, err := referrer(v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, sbomMediaType, doc, file, s)
	return img, art, err
}

func sbomFileName(im image, p v1.Platform, s stamp) string {
	return fmt.Sprintf("%s_%s_%s_%s.spdx.json", im.name, s.version, p.OS, p.Architecture)
}

// writeLayout writes idx, tagged tag, and the referrers of its images as a fresh OCI image layout
// in dir. Tools that read layouts (oras, skopeo, crane, regctl) find the referrers by their
// subject among the layout's manifests.
func writeLayout(dir string, idx v1.ImageIndex, tag string, referrers []v1.Image) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{refNameAnnotation: tag})); err != nil {
		return err
	}
	for _, r := range referrers {
		if err := p.AppendImage(r); err != nil {
			return err
		}
	}
	return nil
}

// refNameAnnotation names the tag of a manifest in an OCI image layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// sbomMediaType is SPDX JSON's registered media type, the SBOM referrers' artifactType.
const sbomMediaType = "application/spdx+json"

// emptyJSON is the OCI empty descriptor's content, the config of artifacts without one.
var emptyJSON = []byte("{}")

// referrer is an OCI 1.1 artifact manifest that refers to subject: artifactType mediaType, the
// empty config, content as its one layer titled title (the file name `oras pull` gives it), as
// `oras attach` makes them. Registries with the referrers API list it for the subject; for the
// others go-containerregistry maintains the referrers tag (sha256-<digest>) when pushing.
func referrer(subject v1.Descriptor, mediaType types.MediaType, content []byte, title string, s stamp) (v1.Image, error) {
	layer := static.NewLayer(content, mediaType)
	ld, err := partial.Descriptor(layer)
	if err != nil {
		return nil, err
	}
	ld.Annotations = map[string]string{"org.opencontainers.image.title": title}
	config := static.NewLayer(emptyJSON, types.MediaType("application/vnd.oci.empty.v1+json"))
	cd, err := partial.Descriptor(config)
	if err != nil {
		return nil, err
	}
	m, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  string(mediaType),
		Config:        *cd,
		Layers:        []v1.Descriptor{*ld},
		Subject:       &subject,
		Annotations:   map[string]string{"org.opencontainers.image.created": s.created.Format(time.RFC3339)},
	})
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&artifact{manifest: m, layer: layer, config: config})
}

// artifact is a manifest with one layer and a raw config, as go-containerregistry's image
// interfaces want it (its mutate package cannot set artifactType).
type artifact struct {
	manifest      []byte
	layer, config v1.Layer
}

func (a *artifact) RawConfigFile() ([]byte, error)      { return emptyJSON, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range []v1.Layer{a.layer, a.config} {
		if d, err := l.Digest(); err == nil && d == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("artifact has no blob %s", h)
}

// pushLayout pushes the index the OCI image layout in dir tags, under that tag, to repo, then the
// referrers the layout holds, and returns the pushed reference with its digest.
func pushLayout(dir, repo string) (string, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return "", err
	}
	ii, err := p.ImageIndex()
	if err != nil {
		return "", err
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return "", err
	}
	var tagged *v1.Descriptor
	var referrers []v1.Hash
	for i, d := range im.Manifests {
		switch {
		case d.Annotations[refNameAnnotation] != "" && d.MediaType.IsIndex():
			if tagged != nil {
				return "", fmt.Errorf("%s tags more than one index", dir)
			}
			tagged = &im.Manifests[i]
		case d.MediaType.IsImage():
			referrers = append(referrers, d.Digest)
		}
	}
	if tagged == nil {
		return "", fmt.Errorf("%s has no tagged image index", dir)
	}
	tag, err := name.NewTag(repo + ":" + tagged.Annotations[refNameAnnotation])
	if err != nil {
		return "", err
	}
	opts := []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain), remote.WithUserAgent("apiconnector-images")}
	idx, err := ii.ImageIndex(tagged.Digest)
	if err != nil {
		return "", err
	}
	if err := remote.WriteIndex(tag, idx, opts...); err != nil {
		return "", err
	}
	for _, h := range referrers {
		img, err := ii.Image(h)
		if err != nil {
			return "", err
		}
		if err := remote.Write(tag.Context().Digest(h.String()), img, opts...); err != nil {
			return "", fmt.Errorf("referrer %s: %w", h, err)
		}
	}
	return tag.String() + "@" + tagged.Digest.String(), nil
}
