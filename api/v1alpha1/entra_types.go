package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EntraCloud names a Microsoft cloud: it selects the identity platform's authority and the
// Microsoft Graph endpoint the operator talks to.
// +kubebuilder:validation:Enum=AzurePublic;AzureUSGovernment;AzureChina
type EntraCloud string

const (
	EntraCloudAzurePublic       EntraCloud = "AzurePublic"
	EntraCloudAzureUSGovernment EntraCloud = "AzureUSGovernment"
	EntraCloudAzureChina        EntraCloud = "AzureChina"
)

// EntraTenantSpec says which Entra tenant connectors of this namespace are registered in and how
// the operator signs in to Microsoft Graph there.
type EntraTenantSpec struct {
	// TenantID is the directory (tenant) ID.
	// +required
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`
	TenantID string `json:"tenantId"`

	// Cloud selects the authority and Graph endpoint. Default AzurePublic.
	// +optional
	// +kubebuilder:default=AzurePublic
	Cloud EntraCloud `json:"cloud,omitempty"`

	// ClientID is the application (client) ID of the app registration the operator acts as in
	// this tenant. It needs the Graph application permissions docs/entra-registration.md lists.
	// +required
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`
	ClientID string `json:"clientId"`

	// Credentials prove the operator is that application.
	// +required
	Credentials EntraCredentials `json:"credentials"`

	// ResyncInterval is how often registrations are read back from Entra and edits made outside
	// the cluster (in the admin center) are undone. Default 10m; at least 1m.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="resyncInterval must be between 1m and 24h"
	ResyncInterval *metav1.Duration `json:"resyncInterval,omitempty"`
}

// EntraCredentials is exactly one way to sign in to the tenant.
// +kubebuilder:validation:XValidation:rule="(has(self.workloadIdentity) ? 1 : 0) + (has(self.clientSecret) ? 1 : 0) + (has(self.clientCertificate) ? 1 : 0) == 1",message="exactly one of workloadIdentity, clientSecret or clientCertificate must be set"
type EntraCredentials struct {
	// WorkloadIdentity signs in with workload identity federation: the operator requests a token
	// for this namespace's ServiceAccount (audience api://AzureADTokenExchange) and exchanges it
	// for an Entra token. No secret is stored anywhere. The app registration needs a federated
	// credential for the cluster's issuer and subject system:serviceaccount:<namespace>:<name>.
	// +optional
	WorkloadIdentity *EntraWorkloadIdentity `json:"workloadIdentity,omitempty"`

	// ClientSecret is a client secret of the app registration, from a Secret key in this namespace.
	// +optional
	ClientSecret *SecretKeySelector `json:"clientSecret,omitempty"`

	// ClientCertificate is a certificate of the app registration with its private key: a Secret
	// in this namespace with tls.crt and tls.key (PEM), such as cert-manager writes.
	// +optional
	ClientCertificate *SecretReference `json:"clientCertificate,omitempty"`
}

// EntraWorkloadIdentity names the ServiceAccount whose token the operator exchanges.
type EntraWorkloadIdentity struct {
	// ServiceAccountName is a ServiceAccount in this namespace. Its owner consents by annotating it
	// azure.workload.identity/client-id: <clientId>; the operator refuses one that is not.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ServiceAccountName string `json:"serviceAccountName"`
}

// EntraTenantStatus is the observed state of the tenant connection.
type EntraTenantStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (the operator signed in to the tenant), Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// EntraTenant connects a namespace to a Microsoft Entra tenant, so its connectors can be
// registered there through Microsoft Graph (spec.entra on an APIConnector).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=entra
// +kubebuilder:printcolumn:name="Tenant",type=string,JSONPath=`.spec.tenantId`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type EntraTenant struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec EntraTenantSpec `json:"spec"`

	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status EntraTenantStatus `json:"status,omitempty"`
}

// EntraTenantList is a list of EntraTenants.
// +kubebuilder:object:root=true
type EntraTenantList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EntraTenant `json:"items"`
}

// EntraDeletionPolicy says what happens in Entra when the connector (or its entra section) goes.
// +kubebuilder:validation:Enum=Delete;Orphan
type EntraDeletionPolicy string

const (
	// EntraDeletionDelete removes what the operator created in Entra (detaching user flows first).
	EntraDeletionDelete EntraDeletionPolicy = "Delete"
	// EntraDeletionOrphan leaves it in Entra.
	EntraDeletionOrphan EntraDeletionPolicy = "Orphan"
)

// EntraUserFlowKind says which kind of user flow a legacy API connector is attached to.
// +kubebuilder:validation:Enum=B2X;B2C
type EntraUserFlowKind string

const (
	// EntraUserFlowB2X is a self-service sign-up user flow of a workforce tenant (b2xUserFlows).
	EntraUserFlowB2X EntraUserFlowKind = "B2X"
	// EntraUserFlowB2C is an Azure AD B2C user flow (b2cUserFlows).
	EntraUserFlowB2C EntraUserFlowKind = "B2C"
)

// EntraRegistration registers the connector in Entra: an API connector attached to user flows at
// the legacy steps, or a custom authentication extension with an event listener for applications
// at the extension steps.
// +kubebuilder:validation:XValidation:rule="!has(self.maximumRetries) || self.maximumRetries <= 1",message="maximumRetries must be 0 or 1",fieldPath=".maximumRetries"
type EntraRegistration struct {
	// TenantRef names the EntraTenant, in the connector's namespace, to register in.
	// +required
	TenantRef LocalObjectReference `json:"tenantRef"`

	// DisplayName is the name shown in the Entra admin center. Default <namespace>/<name>.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	DisplayName string `json:"displayName,omitempty"`

	// UserFlows are the user flow IDs (such as B2X_1_signup) the API connector is attached to at
	// the connector's step. Legacy steps only.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	UserFlows []string `json:"userFlows,omitempty"`

	// UserFlowKind is B2X (workforce self-service sign-up, default) or B2C (Azure AD B2C).
	// PreTokenIssuance exists only in B2C user flows.
	// +optional
	UserFlowKind EntraUserFlowKind `json:"userFlowKind,omitempty"`

	// ClientCertificate is the certificate Entra presents to a connector with
	// authentication.clientCertificate: a Secret with tls.crt and tls.key (PEM) issued by the CA
	// the connector trusts (ca.crt). The operator uploads it as PKCS#12; a new certificate in the
	// Secret is uploaded too, and Entra uses the newest valid one. Legacy steps only.
	// +optional
	ClientCertificate *SecretReference `json:"clientCertificate,omitempty"`

	// Applications are the application (client) IDs whose sign-ins raise the event; the
	// operator's event listener calls the connector for them. Extension steps only.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:Pattern=`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`
	Applications []string `json:"applications,omitempty"`

	// Timeout is how long Entra waits for the extension (timeoutInMilliseconds, 200ms-2s).
	// Default: the connector's budget (spec.timeout, at most 2s). Extension steps only.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('200ms') && duration(self) <= duration('2s')",message="timeout must be between 200ms and 2s"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// MaximumRetries is how often Entra retries a failed call to the extension (0 or 1; default 1).
	// Extension steps only.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaximumRetries *int32 `json:"maximumRetries,omitempty"`

	// DeletionPolicy: Delete (default) removes what the operator created in Entra when the
	// connector or this section is deleted; Orphan leaves it.
	// +optional
	// +kubebuilder:default=Delete
	DeletionPolicy EntraDeletionPolicy `json:"deletionPolicy,omitempty"`
}

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// Name of the object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// EntraStatus is what the operator registered in Entra for the connector.
type EntraStatus struct {
	// Tenant is the EntraTenant the objects below were registered through: deleting them needs it
	// even after spec.entra is gone.
	// +optional
	Tenant string `json:"tenant,omitempty"`

	// TenantID is the tenant the objects below live in.
	// +optional
	TenantID string `json:"tenantId,omitempty"`

	// Step is the step the objects below were registered for: a user flow attachment is made at
	// the step's property, so a changed step is detached from the old one.
	// +optional
	Step Step `json:"step,omitempty"`

	// APIConnectorID is the identityApiConnector's ID (legacy steps).
	// +optional
	APIConnectorID string `json:"apiConnectorId,omitempty"`

	// UserFlowKind is the kind of the user flows below (B2X or B2C).
	// +optional
	UserFlowKind EntraUserFlowKind `json:"userFlowKind,omitempty"`

	// UserFlows are the user flows the API connector is attached to.
	// +optional
	// +listType=set
	UserFlows []string `json:"userFlows,omitempty"`

	// CertificateThumbprint is the SHA-1 thumbprint of the client certificate last uploaded.
	// +optional
	CertificateThumbprint string `json:"certificateThumbprint,omitempty"`

	// CustomExtensionID is the customAuthenticationExtension's ID (extension steps).
	// +optional
	CustomExtensionID string `json:"customExtensionId,omitempty"`

	// EventListenerID is the authenticationEventListener's ID (extension steps).
	// +optional
	EventListenerID string `json:"eventListenerId,omitempty"`

	// CreatedAt is when the operator created the objects, to tell Graph's eventual consistency
	// (an object not yet readable right after its creation) from a deletion in the admin center.
	// +optional
	CreatedAt *metav1.Time `json:"createdAt,omitempty"`

	// LastSyncTime is when the registration was last read back and found matching.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
}
