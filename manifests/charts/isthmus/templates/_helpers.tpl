{{/* The image of every Isthmus container. */}}
{{- define "isthmus.image" -}}
{{ .Values.global.hub }}/isthmus:{{ .Values.global.tag }}
{{- end }}

{{/* Labels on every object of the chart. */}}
{{- define "isthmus.labels" -}}
app.kubernetes.io/part-of: isthmus
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The east-west gateway's ServiceAccount. */}}
{{- define "isthmus.gatewayServiceAccount" -}}
{{ .Values.eastWestGateway.name }}-service-account
{{- end }}
