{{/*
Every helper here reads only .Values and .Release, so that another chart can
call the sidecar helpers with this chart's values:
  include "idp-gate.sidecar" (dict "Values" (index .Values "idp-gate") "Release" .Release)
*/}}

{{- define "idp-gate.name" -}}
{{- default "idp-gate" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "idp-gate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "idp-gate.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "idp-gate.configMapName" -}}
{{- printf "%s-config" (include "idp-gate.fullname" . | trunc 56 | trimSuffix "-") -}}
{{- end -}}

{{- define "idp-gate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "idp-gate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "idp-gate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "idp-gate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "idp-gate.labels" -}}
{{ include "idp-gate.selectorLabels" . }}
app.kubernetes.io/version: {{ include "idp-gate.imageTag" . | quote }}
app.kubernetes.io/component: auth-proxy
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
The image tag: image.tag, else this chart's appVersion. A parent chart that
includes the sidecar has no access to this chart's appVersion and must set
image.tag.
*/}}
{{- define "idp-gate.imageTag" -}}
{{- if .Values.image.tag -}}
{{- .Values.image.tag -}}
{{- else if and .Chart (eq .Chart.Name "idp-gate") -}}
{{- .Chart.AppVersion -}}
{{- else -}}
{{- fail "idp-gate: set image.tag when including idp-gate.sidecar from another chart" -}}
{{- end -}}
{{- end -}}

{{/*
The config file, built from the values. The client secret is only ever a
reference to the Secret-backed variable; its value is never rendered.
*/}}
{{- define "idp-gate.config" -}}
{{- $v := .Values -}}
{{- $cfg := deepCopy (default dict $v.config) -}}
{{- $idp := deepCopy $v.idp -}}
{{- $_ := set $idp "clientSecret" "${IDP_CLIENT_SECRET:-}" -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int $v.ports.proxy)) -}}
{{- $admin := deepCopy (default dict $cfg.admin) -}}
{{- $_ := set $admin "listen" (printf "0.0.0.0:%d" (int $v.ports.admin)) -}}
{{- $_ := set $cfg "admin" $admin -}}
{{- $_ := set $cfg "idp" $idp -}}
{{- $_ := set $cfg "upstreams" $v.upstreams -}}
{{- $_ := set $cfg "routes" $v.routes -}}
{{- with $v.organizations }}{{- $_ := set $cfg "organizations" . -}}{{- end -}}
{{- with $v.organizationBinding }}{{- $_ := set $cfg "organizationBinding" . -}}{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
Checksum of the rendered config, for a pod template annotation: a config
change changes the pod template, so the pods roll, and keys that take effect
only at a start (listeners, limits, shutdown timings) apply too. (The gateway
also reloads a changed mounted ConfigMap in place, between rollouts.)
Only the ConfigMap's content goes in; the Secret's values never do.
*/}}
{{- define "idp-gate.configChecksum" -}}
{{- include "idp-gate.config" . | sha256sum -}}
{{- end -}}

{{/*
The idp-gate container, as one item of a pod's `containers:` list. Used by
this chart's Deployment and by charts that add idp-gate as a sidecar.
*/}}
{{- define "idp-gate.sidecar" -}}
- name: idp-gate
  image: "{{ .Values.image.repository }}:{{ include "idp-gate.imageTag" . }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["run", "--config", "/etc/idp-gate/config.yaml"]
  ports:
    - name: idp-gate
      containerPort: {{ int .Values.ports.proxy }}
      protocol: TCP
    - name: idp-gate-admin
      containerPort: {{ int .Values.ports.admin }}
      protocol: TCP
  env:
    - name: IDP_CLIENT_ID
      valueFrom:
        secretKeyRef:
          name: {{ .Values.idpSecret.name | quote }}
          key: {{ .Values.idpSecret.clientIdKey | quote }}
    {{- if .Values.idpSecret.clientSecretKey }}
    - name: IDP_CLIENT_SECRET
      valueFrom:
        secretKeyRef:
          name: {{ .Values.idpSecret.name | quote }}
          key: {{ .Values.idpSecret.clientSecretKey | quote }}
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  livenessProbe:
    httpGet:
      path: {{ .Values.probes.liveness.path }}
      port: idp-gate-admin
    initialDelaySeconds: {{ int .Values.probes.liveness.initialDelaySeconds }}
    periodSeconds: {{ int .Values.probes.liveness.periodSeconds }}
    timeoutSeconds: {{ int .Values.probes.liveness.timeoutSeconds }}
    failureThreshold: {{ int .Values.probes.liveness.failureThreshold }}
  readinessProbe:
    httpGet:
      path: {{ .Values.probes.readiness.path }}
      port: idp-gate-admin
    initialDelaySeconds: {{ int .Values.probes.readiness.initialDelaySeconds }}
    periodSeconds: {{ int .Values.probes.readiness.periodSeconds }}
    timeoutSeconds: {{ int .Values.probes.readiness.timeoutSeconds }}
    failureThreshold: {{ int .Values.probes.readiness.failureThreshold }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: idp-gate-config
      mountPath: /etc/idp-gate
      readOnly: true
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/*
The volumes the container mounts, as items of a pod's `volumes:` list.
*/}}
{{- define "idp-gate.sidecarVolumes" -}}
- name: idp-gate-config
  configMap:
    name: {{ include "idp-gate.configMapName" . }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}
