{{- define "apiconnector.name" -}}apiconnector{{- end -}}
{{- define "apiconnector.labels" -}}
app.kubernetes.io/name: apiconnector-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "apiconnector.selector" -}}
app.kubernetes.io/name: apiconnector-operator
app.kubernetes.io/component: manager
{{- end -}}
