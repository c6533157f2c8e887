{{/*
Names, labels and the few derived values every template shares.
*/}}

{{- define "envsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "envsync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "envsync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "envsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "envsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "envsync.labels" -}}
helm.sh/chart: {{ include "envsync.chart" . }}
{{ include "envsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: envsync
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "envsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "envsync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "envsync.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The kopf peering object's name: peering.name, else the release's full name.
*/}}
{{- define "envsync.peeringName" -}}
{{- default (include "envsync.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
Cross-field rules a JSON schema cannot say clearly. Each failure names the values to change.
*/}}
{{- define "envsync.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.peering.enabled) }}
{{- fail "replicaCount > 1 needs peering.enabled=true: without kopf peering every replica would sync the same EnvSyncs at once" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (lt (int .Values.replicaCount) 2) }}
{{- fail "podDisruptionBudget.enabled needs replicaCount >= 2 (and peering.enabled=true): with one replica the budget would block every node drain" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled=true: there is no endpoint to scrape" }}
{{- end }}
{{- if and .Values.metrics.prometheusRule.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.prometheusRule.enabled needs metrics.enabled=true: the alerts read the operator's metrics" }}
{{- end }}
{{- if and (not .Values.rbac.create) (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "serviceAccount.name is required when serviceAccount.create is false" }}
{{- end }}
{{- end }}

{{/*
RBAC rules, in one place so Role and ClusterRole modes grant exactly the same verbs.
Each rule is what the operator does, nothing more (tests/apiserver/test_rbac.py takes each verb
away in turn against a real API server, and something the operator does then fails):
  envsyncs: list/watch to follow the resources, patch for kopf's finalizer and the progress
    annotations of a deletion it retries;
  envsyncs/status: patch, the only way status is written;
  configmaps, secrets: get a named source or auth.secretRef, list/watch labelled sources;
  events: create, kopf posts each event (the API server counts repeats itself).
*/}}
{{/*
Cluster mode only: kopf lists and watches CRDs to notice its resources appear (an operator
started before its CRD, a CRD re-installed). Without it kopf retries for about a minute at
start-up and then never notices a CRD installed later. A namespaced Role cannot grant it.
*/}}
{{- define "envsync.crdRule" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end -}}

{{- define "envsync.rules" -}}
- apiGroups: ["envsync.dev"]
  resources: ["envsyncs"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["envsync.dev"]
  resources: ["envsyncs/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["configmaps", "secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/*
The peering rule: kopf lists and watches the peering object and patches its keep-alive into it.
*/}}
{{- define "envsync.peeringRule" -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ .resource | quote }}]
  resourceNames: [{{ .name | quote }}]
  verbs: ["patch"]
- apiGroups: ["kopf.dev"]
  resources: [{{ .resource | quote }}]
  verbs: ["list", "watch"]
{{- end }}
