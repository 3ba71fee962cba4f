{{- define "rackload.fullname" -}}
{{- printf "%s-rackload" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rackload.labels" -}}
app.kubernetes.io/name: rackload
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rackload.selector" -}}
app.kubernetes.io/name: rackload
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rackload.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{- define "rackload.tokenSecret" -}}
{{- if .Values.token.existingSecret -}}{{ .Values.token.existingSecret }}{{- else -}}{{ include "rackload.fullname" . }}-token{{- end -}}
{{- end -}}

{{- define "rackload.coordinatorUrl" -}}
{{- if .Values.tls.enabled -}}https{{- else -}}http{{- end -}}://{{ include "rackload.fullname" . }}-coordinator:{{ .Values.coordinator.port }}
{{- end -}}

{{/* The token (and TLS files) every role reads from its environment. */}}
{{- define "rackload.fabricEnv" -}}
- name: RACKLOAD_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "rackload.tokenSecret" . }}
      key: token
{{- if .Values.tls.enabled }}
- name: RACKLOAD_TLS_CERT
  value: /tls/tls.crt
- name: RACKLOAD_TLS_KEY
  value: /tls/tls.key
- name: RACKLOAD_TLS_CA
  value: /tls/ca.crt
{{- end }}
{{- if .Values.otlp.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otlp.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .Values.otlp.protocol | quote }}
{{- end }}
{{- end -}}

{{- define "rackload.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
