"""The planner: desired × remote × owner → steps, without any network."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from envsync.sync import plan

ME = "ns/app"


@dataclass(frozen=True)
class Remote:
    key: str
    value: str | None
    owner: str | None = None
    owner_known: bool = True
    kind: str | None = None


def want(**values: str | None) -> dict[str, plan.Desired]:
    return {
        k: plan.desired_entry(v, i + 1, lambda _v: None) for i, (k, v) in enumerate(values.items())
    }


def run(planner: plan.Planner, *pages: list[Remote]) -> dict[str, plan.Step]:
    steps = [s for page in pages for s in planner.feed(page)] + planner.finish()
    by_key = {s.key: s for s in steps}
    assert len(by_key) == len(steps), "one step per key"
    return by_key


def test_create_update_unchanged_across_pages() -> None:
    planner = plan.Planner(want(A="1", B="2", C="3"), owner=ME)
    steps = run(planner, [Remote("A", "1", ME)], [Remote("B", "old", ME)])
    assert {k: s.action for k, s in steps.items()} == {
        "A": "unchanged",
        "B": "update",
        "C": "create",
    }


def test_feed_decides_each_page_as_it_arrives() -> None:
    planner = plan.Planner(want(A="1", B="2"), owner=ME)
    assert [s.action for s in planner.feed([Remote("A", "x", ME)])] == ["update"]
    assert [s.key for s in planner.finish()] == ["B"]


def test_foreign_and_unowned_entries_are_conflicts_not_updates() -> None:
    planner = plan.Planner(want(A="new", B="new"), owner=ME)
    steps = run(planner, [Remote("A", "old", "other/x"), Remote("B", "old", None)])
    assert steps["A"].action == "conflict"
    assert "other/x" in (steps["A"].reason or "")
    assert steps["B"].action == "conflict"
    assert "adopt" in (steps["B"].reason or "")


def test_unknown_owner_asks_for_verification_only_when_writing() -> None:
    planner = plan.Planner(want(A="same", B="new"), owner=ME, prune=True)
    steps = run(
        planner,
        [
            Remote("A", "same", owner_known=False),
            Remote("B", "old", owner_known=False),
            Remote("GONE", "x", owner_known=False),
        ],
    )
    assert steps["A"] == plan.Step("unchanged", "A")
    assert steps["B"].verify
    assert steps["B"].action == "update"
    assert steps["GONE"].verify
    assert steps["GONE"].action == "delete"


def test_resolve_after_verification() -> None:
    update = plan.Step("update", "K", verify=True)
    delete = plan.Step("delete", "K", verify=True)
    assert plan.resolve(update, ME, owner=ME, adopt=False) == plan.Step("update", "K")
    assert plan.resolve(update, None, owner=ME, adopt=False).action == "conflict"  # type: ignore[union-attr]
    assert plan.resolve(update, None, owner=ME, adopt=True) == plan.Step("update", "K", take=True)
    unknown = plan.resolve(update, None, owner=ME, adopt=False, known=False)
    assert unknown is not None
    assert "not owned by" in (unknown.reason or "")
    assert plan.resolve(delete, None, owner=ME, adopt=True) is None  # never prune what is not ours
    assert plan.resolve(delete, ME, owner=ME, adopt=False) == plan.Step("delete", "K")
    assert (
        plan.resolve(plan.Step("adopt", "K", verify=True), ME, owner=ME, adopt=True).action
        == "unchanged"
    )  # type: ignore[union-attr]


def test_prune_deletes_only_owned_entries() -> None:
    planner = plan.Planner(want(A="1"), owner=ME, prune=True)
    steps = run(
        planner,
        [
            Remote("A", "1", ME),
            Remote("MINE", "x", ME),
            Remote("THEIRS", "x", "o/t"),
            Remote("NOBODY", "x", None),
        ],
    )
    assert steps["MINE"].action == "delete"
    assert "THEIRS" not in steps
    assert "NOBODY" not in steps


def test_without_prune_remote_only_entries_are_ignored() -> None:
    steps = run(plan.Planner(want(), owner=ME), [Remote("MINE", "x", ME)])
    assert steps == {}


def test_skipped_keys_are_never_pruned_nor_written() -> None:
    desired = {
        "BIG": plan.desired_entry("x" * 10, 1, lambda v: "too large" if len(v) > 5 else None),
        "BARE": plan.desired_entry(None, 2, lambda v: None),
    }
    planner = plan.Planner(desired, owner=ME, prune=True)
    steps = run(planner, [Remote("BIG", "old", ME)])
    assert steps["BIG"] == plan.Step("skip", "BIG", "too large")
    assert steps["BARE"].action == "skip"
    assert "never pushed" in (steps["BARE"].reason or "")


def test_if_not_exists_keeps_remote_values() -> None:
    planner = plan.Planner(want(A="new", B="b"), owner=ME, update_policy="IfNotExists")
    steps = run(planner, [Remote("A", "old", ME)])
    assert steps["A"].action == "unchanged"
    assert steps["A"].reason == plan.IF_NOT_EXISTS_REASON
    assert steps["B"].action == "create"


def test_adopt_takes_over_unowned_and_tags_matching_entries() -> None:
    planner = plan.Planner(want(A="new", B="same", C="same"), owner=ME, adopt=True)
    steps = run(
        planner, [Remote("A", "old", None), Remote("B", "same", "x/y"), Remote("C", "same", ME)]
    )
    assert steps["A"] == plan.Step("update", "A", take=True)
    assert steps["B"] == plan.Step("adopt", "B", take=True)
    assert steps["C"].action == "unchanged"


def test_type_change_is_an_update() -> None:
    planner = plan.Planner(want(A="1"), owner=ME, kind="SecureString")
    steps = run(planner, [Remote("A", "1", ME, kind="String")])
    assert steps["A"].action == "update"


def test_summarize_counts_every_action() -> None:
    counts = plan.summarize(
        [plan.Step("create", "a"), plan.Step("create", "b"), plan.Step("skip", "c")]
    )
    assert counts["create"] == 2
    assert counts["skip"] == 1
    assert counts["delete"] == 0


keys = st.text(alphabet="ABCDEFGH_", min_size=1, max_size=3)
values = st.text(alphabet="xyz", max_size=2)


@settings(max_examples=150, deadline=None)
@given(
    local=st.dictionaries(keys, values, max_size=8),
    remote=st.dictionaries(
        keys, st.tuples(values, st.sampled_from([ME, "other", None])), max_size=8
    ),
    prune=st.booleans(),
    page=st.integers(min_value=1, max_value=4),
)
def test_invariants(
    local: dict[str, str], remote: dict[str, tuple[str, str | None]], prune: bool, page: int
) -> None:
    planner = plan.Planner(want(**local), owner=ME, prune=prune)
    entries = [Remote(k, v, o) for k, (v, o) in remote.items()]
    pages = [entries[i : i + page] for i in range(0, len(entries), page)]
    steps = run(planner, *pages)
    for key, step in steps.items():
        owner = remote[key][1] if key in remote else None
        if step.action in ("update", "delete"):
            assert owner == ME, "never write or delete what is not ours"
        if step.action == "delete":
            assert prune
            assert key not in local
        if step.action == "create":
            assert key not in remote
        if step.action == "unchanged":
            assert remote[key][0] == local[key]
    assert set(local) <= set(steps), "every wanted key gets a decision"
