package controllers

import (
	"context"
	"strings"
	"testing"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// restrictedNamespace creates a namespace whose pods must meet the Pod Security "restricted"
// profile: the API server's PodSecurity admission refuses any other pod.
func restrictedNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-psa-", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// createRuntimePod creates (dry run: admission runs, nothing is stored) the pod the connector's
// Deployment would create, after edit.
func createRuntimePod(t *testing.T, d *appsv1.Deployment, edit func(*corev1.PodSpec)) error {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, GenerateName: d.Name + "-", Labels: d.Spec.Template.Labels},
		Spec:       *d.Spec.Template.Spec.DeepCopy(),
	}
	edit(&pod.Spec)
	return k8s.Create(context.Background(), pod, client.DryRunAll)
}

// Every shape of runtime pod the operator builds is admitted in a namespace that enforces the
// restricted Pod Security profile; the same pod with one hardening setting removed is refused,
// so the admission check is live.
func TestRuntimePodsMeetRestrictedPodSecurity(t *testing.T) {
	ns := restrictedNamespace(t)
	ca := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "entra-ca"}, Data: map[string][]byte{"ca.crt": caPEM(t)}}
	tlsSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("y")}}
	create(t, basicSecret(ns, "entra-basic", strongPassword), ca, tlsSecret)

	basic := newConnector(ns, "basic")
	// The runtime terminates TLS: a third volume, the certificate Secret.
	mtls := newConnector(ns, "mtls")
	mtls.Spec.Step = apiv1.StepPostFederationSignup
	mtls.Spec.Rules = nil
	mtls.Spec.Authentication = apiv1.Authentication{ClientCertificate: &apiv1.ClientCertificateAuth{
		SecretRef: apiv1.SecretReference{Name: "entra-ca"}, AllowedSubjects: []string{"entra.contoso.example"}}}
	mtls.Spec.Exposure.Type = apiv1.ExposureLoadBalancer
	mtls.Spec.Exposure.TLS = &apiv1.TLS{SecretName: "own-tls"}
	forwarded := forwardedConnector(ns, "forwarded", "10.42.3.0/24")
	create(t, basic, mtls, forwarded)

	for _, conn := range []*apiv1.APIConnector{basic, mtls, forwarded} {
		t.Run(conn.Name, func(t *testing.T) {
			key := types.NamespacedName{Namespace: ns, Name: children.DeploymentName(conn)}
			d := &appsv1.Deployment{}
			eventually(t, timeout, func() error { return get(t, key, d) })
			if err := createRuntimePod(t, d, func(*corev1.PodSpec) {}); err != nil {
				t.Fatalf("the runtime pod of %s is refused in a restricted namespace: %v", conn.Name, err)
			}
			for name, weaken := range map[string]func(*corev1.PodSpec){
				"allowPrivilegeEscalation": func(s *corev1.PodSpec) {
					s.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
				},
				"capabilities": func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Capabilities = nil },
				"seccompProfile": func(s *corev1.PodSpec) {
					s.SecurityContext.SeccompProfile = nil
					s.Containers[0].SecurityContext.SeccompProfile = nil
				},
				"runAsNonRoot": func(s *corev1.PodSpec) {
					s.SecurityContext.RunAsNonRoot = nil
					s.Containers[0].SecurityContext.RunAsNonRoot = nil
				},
			} {
				err := createRuntimePod(t, d, weaken)
				if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "violates PodSecurity") || !strings.Contains(err.Error(), name) {
					t.Errorf("without %s: err = %v, want Forbidden by PodSecurity naming %s", name, err, name)
				}
			}
		})
	}
}
