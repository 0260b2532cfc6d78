package children

import (
	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
)

// MakeEntraBasicSecret holds the Basic credential Entra currently has for a connector registered
// through Microsoft Graph. The runtime accepts it besides the connector's own Secret, so a
// rotated password keeps working for Entra until Entra has the new one.
func MakeEntraBasicSecret(c *apiv1.APIConnector, username, password []byte) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(EntraBasicSecretName(c), c.Namespace).
		WithLabels(Labels(c)).
		WithOwnerReferences(ownerRef(c)).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{"username": username, "password": password})
}
