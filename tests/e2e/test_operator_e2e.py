"""The scenarios of test_operator.py, unchanged, against a real cluster and LocalStack (-m e2e).

Only the fixtures differ (tests/e2e/conftest.py): the cluster is reached through kubectl and a
kubeconfig, AWS through LocalStack. Where the emulator's request log tells when the operator
has looked at a source, the real cluster falls back to a short wait.
"""

from __future__ import annotations

import pytest

from test_operator import (  # noqa: F401 - collected here with this folder's fixtures
    test_configmap_edit_reaches_aws_without_a_spec_change,
    test_create_reports_ready_with_counts,
    test_delete_policy_removes_owned_keys_before_the_object_goes,
    test_drift_in_aws_is_repaired_and_reported,
    test_dry_run_reports_the_plan_and_writes_nothing,
    test_force_sync_annotation_runs_a_full_sync_once_per_value,
    test_key_removed_from_the_file_is_pruned,
    test_metrics_endpoint_is_scraped_and_parsed,
    test_missing_configmap_is_reported_and_recovers_when_created,
    test_parse_error_pushes_nothing_and_reports_the_line,
    test_path_outside_the_namespace_prefix_is_refused,
    test_retain_policy_keeps_keys_and_adds_no_finalizer,
    test_second_envsync_on_the_same_path_is_refused_and_the_first_untouched,
    test_secret_source_to_securestring,
    test_suspended_envsync_writes_nothing_until_resumed,
    test_unchanged_source_costs_no_aws_calls,
)

pytestmark = pytest.mark.e2e
