{{- /* The prefix of every object name: fullnameOverride, else the release name, so two releases
never share a cluster-scoped name, and the release "apiconnector" gives the names of
config/default. 36 characters leave room for the longest suffix within the 63 a Service name may
have ("-controller-manager-metrics"). */ -}}
{{- define "apiconnector.fullname" -}}
{{- $name := .Values.fullnameOverride | default .Release.Name -}}
{{- if gt (len $name) 36 -}}
{{- fail (printf "the release name %q is longer than 36 characters, too long to prefix the chart's object names: set fullnameOverride to a shorter prefix" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}
{{- define "apiconnector.labels" -}}
app.kubernetes.io/name: apiconnector-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end -}}
{{- /* The manager's pods, of this release only. */ -}}
{{- define "apiconnector.selector" -}}
app.kubernetes.io/name: apiconnector-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end -}}
{{- /* The manager's ServiceAccount: made by the chart, or one that exists (serviceAccount.create
false), whose name must then be given: falling back to the namespace's "default" account would
grant the manager's rules to every pod that runs as it. */ -}}
{{- define "apiconnector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (printf "%s-controller-manager" (include "apiconnector.fullname" .)) -}}
{{- else if .Values.serviceAccount.name -}}
{{- .Values.serviceAccount.name -}}
{{- else -}}
{{- fail "serviceAccount.name is required when serviceAccount.create is false: name the existing ServiceAccount the manager runs as" -}}
{{- end -}}
{{- end -}}
{{- /* The subject of the manager's RoleBindings and ClusterRoleBindings. */ -}}
{{- define "apiconnector.subject" -}}
- kind: ServiceAccount
  name: {{ include "apiconnector.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}
{{- /* The Secret holding the connectors' config-hash key (--hash-key-secret). The release
"apiconnector" keeps the manager's default name, so an install made before names followed the
release keeps its key and no connector rolls. */ -}}
{{- define "apiconnector.hashKeySecret" -}}
{{- include "apiconnector.fullname" . }}-operator-hash-key
{{- end -}}
{{- /* The Lease the manager's replicas elect their leader with (--leader-election-id): one per
release, so two releases in one namespace each have a leader. The release "apiconnector" keeps
the manager's default (controllers.LeaderElectionID), so an upgrade hands over the same Lease. */ -}}
{{- define "apiconnector.leaderElectionID" -}}
{{- include "apiconnector.fullname" . }}-operator.apiconnector.dev
{{- end -}}
{{- /* The metrics Service, whose in-cluster DNS name the metrics certificate is issued for. */ -}}
{{- define "apiconnector.metricsService" -}}
{{- include "apiconnector.fullname" . }}-controller-manager-metrics
{{- end -}}
{{- /* The Secret the manager serves its metrics certificate from; empty: none (self-signed). */ -}}
{{- define "apiconnector.metricsCertSecret" -}}
{{- if .Values.metrics.certificate.secretName -}}
{{- .Values.metrics.certificate.secretName -}}
{{- else if .Values.metrics.certificate.certManager.enabled -}}
{{- include "apiconnector.fullname" . }}-metrics-cert
{{- end -}}
{{- end -}}
{{- /* The runtime-images ConfigMap's data: the manager's --runtime-image and
--allowed-runtime-images and the admission policy's parameter. Patterns are checked as the
manager checks them (controllers.ParseImagePatterns), so a bad one fails the install, not the pod. */ -}}
{{- define "apiconnector.runtimeImages" -}}
{{- range .Values.allowedRuntimeImages }}
{{- if or (regexMatch "[?\\[\\],\\\\]" .) (regexMatch "\\*." .) }}
{{- fail (printf "allowedRuntimeImages: pattern %q: only an exact image reference or a prefix ending in one * is supported" .) }}
{{- end }}
{{- end -}}
runtimeImage: {{ printf "%s:%s" .Values.runtimeImage.repository .Values.runtimeImage.tag | quote }}
allowedRuntimeImages: {{ join "," .Values.allowedRuntimeImages | quote }}
{{- end -}}
