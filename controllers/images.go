package controllers

import (
	"fmt"
	"path"
	"strings"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
)

// Whoever may create an APIConnector decides which image runs with the connector's Secrets
// mounted when spec.runtime.image is honoured, so it is honoured only for images the platform
// team allows (--allowed-runtime-images).

// imageRepository is an image reference without its tag or digest.
func imageRepository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// imageAllowed reports whether ref matches one of patterns (path.Match globs on the whole
// reference, e.g. registry.example/apiconnector-runtime:* or ...@sha256:*). Without patterns,
// only images of the default runtime image's repository are allowed.
func imageAllowed(ref, defaultImage string, patterns []string) bool {
	if len(patterns) == 0 {
		return imageRepository(ref) == imageRepository(defaultImage)
	}
	for _, p := range patterns {
		if ok, err := path.Match(p, ref); err == nil && ok {
			return true
		}
	}
	return false
}

// imageProblem is why the connector's runtime image may not run, "" when it may.
func (r *Reconciler) imageProblem(conn *apiv1.APIConnector) string {
	img := conn.Spec.Runtime.Image
	if img == "" || imageAllowed(img, r.Options.RuntimeImage, r.Options.AllowedRuntimeImages) {
		return ""
	}
	allowed := "images of " + imageRepository(r.Options.RuntimeImage)
	if len(r.Options.AllowedRuntimeImages) > 0 {
		allowed = strings.Join(r.Options.AllowedRuntimeImages, ", ")
	}
	return fmt.Sprintf("spec.runtime.image %q is not allowed by the operator (allowed: %s); remove it to run the default runtime image", img, allowed)
}
