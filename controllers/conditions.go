package controllers

import (
	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types. Ready, Reconciling and Stalled follow kstatus so Flux, Argo CD and
// `kubectl wait` understand the connector; the others say which part is not there yet.
const (
	ConditionReady               = "Ready"
	ConditionReconciling         = "Reconciling"
	ConditionStalled             = "Stalled"
	ConditionRulesValid          = "RulesValid"
	ConditionDeploymentAvailable = "DeploymentAvailable"
	ConditionCertificateReady    = "CertificateReady"
	ConditionRouteReady          = "RouteReady"
	// ConditionTrustedProxiesScoped is only set for forwarded client certificates; it warns and
	// does not affect Ready.
	ConditionTrustedProxiesScoped = "TrustedProxiesScoped"
)

// Reasons.
const (
	ReasonSucceeded               = "Succeeded"
	ReasonProgressing             = "Progressing"
	ReasonInvalidRules            = "InvalidRules"
	ReasonSecretNotFound          = "SecretNotFound"
	ReasonSecretKeyMissing        = "SecretKeyMissing"
	ReasonSecretInvalid           = "SecretInvalid"
	ReasonWeakPassword            = "WeakPassword"
	ReasonImageNotAllowed         = "ImageNotAllowed"
	ReasonAnnotationNotAllowed    = "AnnotationNotAllowed"
	ReasonScoped                  = "Scoped"
	ReasonTrustedProxiesTooWide   = "TrustedProxiesTooWide"
	ReasonConfigMapNotFound       = "ConfigMapNotFound"
	ReasonReconcileError          = "ReconcileError"
	ReasonScaledToZero            = "ScaledToZero"
	ReasonChildConflict           = "ChildConflict"
	ReasonEndpointConflict        = "EndpointConflict"
	ReasonNotHTTPS                = "NotHTTPS"
	ReasonDeploymentUnavailable   = "DeploymentUnavailable"
	ReasonCertManagerNotInstalled = "CertManagerNotInstalled"
	ReasonCertificateNotReady     = "CertificateNotReady"
	ReasonCompiled                = "Compiled"
	ReasonAvailable               = "Available"
	ReasonIssued                  = "Issued"
	ReasonGatewayAPINotInstalled  = "GatewayAPINotInstalled"
	ReasonRouteNotAccepted        = "RouteNotAccepted"
	ReasonAccepted                = "Accepted"
)

// setCondition records a condition for the connector's current generation.
func setCondition(c *apiv1.APIConnector, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{
		Type:               typ,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: c.Generation,
	})
}

func conditionIs(c *apiv1.APIConnector, typ string, status metav1.ConditionStatus) bool {
	cond := meta.FindStatusCondition(c.Status.Conditions, typ)
	return cond != nil && cond.Status == status
}
