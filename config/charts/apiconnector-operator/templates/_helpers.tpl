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
