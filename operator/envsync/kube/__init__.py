"""The EnvSync resource as Kubernetes sees it: the pydantic models (spec and status, the CRD's
source of truth), the CRD and reference docs generated from them, the status built from a
sync's report, and the places a target's keys live. No kopf here: that is ``operator/``."""
