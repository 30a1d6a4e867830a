"""The task list parser and the graph helpers are pure: tested in-process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs.tasklists import graph
from jobs.tasklists.parser import auto_id, parse, parse_file

SIXTY = Path(__file__).parent / "data" / "tasks_60_items.md"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_a_realistic_sixty_item_file() -> None:
    parsed = parse_file(SIXTY)
    assert parsed.title == "Agent platform build plan"
    assert len(parsed.items) == 60
    assert [i.position for i in parsed.items] == list(range(60))
    # the three malformed lines are reported with their line numbers; the rest loaded
    lines = SIXTY.read_text().splitlines()
    expected = {
        lines.index("-[ ] REL-055: Sign the artifacts") + 1: "not a list item",
        lines.index("- [ ] [P9] REL-056: Tag the release") + 1: "priority P9 is out of range",
        lines.index("- [] REL-058: Review the release notes") + 1: "malformed checkbox '[]'",
    }
    assert {p.line: p.reason for p in parsed.problems}.keys() == expected.keys()
    for problem in parsed.problems:
        assert problem.path == str(SIXTY)
        assert expected[problem.line] in problem.reason
        assert str(problem).startswith(f"{SIXTY}:{problem.line}: ")
    by_id = parsed.by_id()
    assert not {"REL-055", "REL-056", "REL-058"} & by_id.keys()
    # nested sections, checked items, ids in several spellings, auto ids
    assert by_id["REL-057"].section == "Phase 5: Release / Packaging / Release notes"
    assert sum(i.checked for i in parsed.items) == 6
    assert by_id["FND-001"].priority == 4 and by_id["FND-003"].priority == 1
    assert by_id["EXE-013"].priority == 3  # no priority: P3
    assert sum(not i.explicit_id for i in parsed.items) == 5
    assert all(i.item_id.startswith("auto-") for i in parsed.items if not i.explicit_id)
    # dependencies in three spellings, and on a description line
    assert by_id["FND-008"].dependencies == ("FND-005", "FND-007")
    assert by_id["FND-004"].dependencies == ("FND-001",)
    assert by_id["REL-057"].dependencies == ("REL-054",)
    assert by_id["REL-057"].details == "Collect every merged change since the last tag."
    # a nested checkbox is an item of its own, not a description line
    assert by_id["REL-052"].dependencies == ("REL-051",) and by_id["REL-051"].details == ""
    assert by_id["REL-059"].priority == 1 and by_id["REL-059"].title == "Announce the release"
    assert graph.find_cycle(parsed.items) is None


def test_the_canonical_form_and_common_variants() -> None:
    parsed = parse(
        "- [ ] [P2] EXE-004: Description (depends: EXE-001, EXE-002)\n"
        "- [x] EXE-001: done\n"
        "* [X] [EXE-002] bracketed id\n"
        "- [ ] P1 EXE-005 - dash separator (after EXE-004)\n"
        "+ [ ] **EXE-006**: bold id (P4)\n"
        "1. [ ] (P2) [EXE-007] ordered list, depends on EXE-005 and EXE-006\n"
        "- [ ] EXE-008: trailing clause depends: EXE-007\n"
        "- [ ] EXE-009: requires (requires: EXE-008) and blocked (blocked by EXE-001)\n"
    )
    assert parsed.problems == ()
    b = parsed.by_id()
    assert (b["EXE-004"].priority, b["EXE-004"].title) == (2, "Description")
    assert b["EXE-004"].dependencies == ("EXE-001", "EXE-002") and not b["EXE-004"].checked
    assert b["EXE-001"].checked and b["EXE-002"].checked
    assert (b["EXE-005"].priority, b["EXE-005"].title) == (1, "dash separator")
    assert b["EXE-005"].dependencies == ("EXE-004",)
    assert (b["EXE-006"].priority, b["EXE-006"].title) == (4, "bold id")
    assert b["EXE-007"].priority == 2
    assert b["EXE-007"].title == "ordered list, depends on EXE-005 and EXE-006"
    assert b["EXE-008"].dependencies == ("EXE-007",)
    assert b["EXE-009"].dependencies == ("EXE-008", "EXE-001")


def test_sections_nest_and_description_lines_follow_the_item() -> None:
    parsed = parse(
        "# Title\n## A\n### A1\n- [ ] T-1: one\n  line one\n  line two\n\n  second paragraph\n"
        "  - a plain note\n## B\n- [ ] T-2: two\n"
    )
    one, two = parsed.items
    assert (one.section, two.section) == ("A / A1", "B")
    assert one.details == "line one\nline two\n\nsecond paragraph\n- a plain note"
    assert one.description == "one\n" + one.details
    assert one.line == 4 and two.line == 11


def test_problems_are_reported_and_the_rest_loads() -> None:
    parsed = parse(
        "- [ ] A-1: fine\n"
        "- [ ] A-1: duplicate id\n"
        "- [ ]\n"
        "- [?] odd box\n"
        "- [ ] A-2: unknown dependency (depends: A-9)\n"
        "- [ ] A-3: not an id (depends: the database)\n",
        "x.md",
    )
    assert [i.item_id for i in parsed.items] == ["A-1", "A-2", "A-3"]
    assert parsed.items[0].title == "fine"
    reasons = {p.line: p.reason for p in parsed.problems}
    assert "duplicate id A-1 (first on line 1)" in reasons[2]
    assert reasons[3] == "the item has no text"
    assert "malformed checkbox '[?]'" in reasons[4]
    assert "A-2 depends on A-9, which is not in the list" in reasons[5]
    assert "dependency 'the', 'database' is not an item id" in reasons[6]
    assert parsed.items[1].dependencies == () and parsed.items[2].dependencies == ()


def test_plain_bullets_and_prose_are_not_items() -> None:
    parsed = parse("Intro text.\n\n- a plain bullet\n- [link](http://x) another\n")
    assert parsed.items == () and parsed.problems == ()


def test_ids_without_an_explicit_id_are_stable_across_edits_elsewhere() -> None:
    before = parse("## S\n- [ ] write docs\n- [ ] ship it\n")
    after = parse("## S\n- [ ] [P1] new first item X-1: hi\n- [ ] write docs\n- [x] ship it\n")
    assert before.items[0].item_id == auto_id("S", "write docs")
    assert {i.item_id for i in before.items} <= {i.item_id for i in after.items}
    other_section = parse("## T\n- [ ] write docs\n")
    assert other_section.items[0].item_id != before.items[0].item_id
    twice = parse("- [ ] same\n- [ ] same\n")
    assert len({i.item_id for i in twice.items}) == 2


def test_cycles_are_found_and_spelled_out() -> None:
    parsed = parse(
        "- [ ] C-1: a (depends: C-3)\n- [ ] C-2: b (depends: C-1)\n"
        "- [ ] C-3: c (depends: C-2)\n- [ ] C-4: d (depends: C-4)\n"
    )
    assert graph.describe_cycle(graph.find_cycle(parsed.items[:3]) or []) == (
        "C-1 -> C-3 -> C-2 -> C-1"
    )
    assert graph.find_cycle(parsed.items[3:]) == ["C-4", "C-4"]


def cand(item_id: str, priority: int, position: int, *deps: str) -> graph.Candidate:
    return graph.Candidate(item_id=item_id, priority=priority, position=position, dependencies=deps)


def test_runnable_orders_by_priority_then_position_and_waits_for_dependencies() -> None:
    waiting = [cand("a", 3, 0), cand("b", 1, 1, "x"), cand("c", 2, 2), cand("d", 2, 3)]
    assert [c.item_id for c in graph.runnable(waiting, set(), room=3)] == ["c", "d", "a"]
    assert [c.item_id for c in graph.runnable(waiting, {"x"}, room=2)] == ["b", "c"]
    assert graph.runnable(waiting, set(), room=0) == []


def test_dead_dependencies_skip_dependents_transitively() -> None:
    waiting = [cand("b", 3, 1, "a"), cand("c", 3, 2, "b"), cand("d", 3, 3, "z")]
    assert graph.blocked_by_dead(waiting, {"a": "a"}) == {"b": "a", "c": "b"}


@pytest.mark.parametrize(
    ("durations", "remaining", "running", "concurrency", "expected_s"),
    [
        ([10.0, 20.0], 4, [], 1, 60.0),  # 4 left x 15 s
        ([10.0, 20.0], 4, [], 2, 30.0),  # spread over 2
        ([10.0], 2, [4.0], 1, 16.0),  # 2 x 10 s, one is 4 s in
    ],
)
def test_forecast_from_observed_durations(
    durations: list[float],
    remaining: int,
    running: list[float],
    concurrency: int,
    expected_s: float,
) -> None:
    fc = graph.forecast(
        durations,
        remaining=remaining,
        running_elapsed_s=running,
        concurrency=concurrency,
        now=NOW,
    )
    assert fc.finish_at == NOW + timedelta(seconds=expected_s)
    assert "left" in fc.describe(NOW)
    unknown = graph.forecast([], remaining=3, running_elapsed_s=[], concurrency=1, now=NOW)
    assert unknown.finish_at is None and "unknown" in unknown.describe(NOW)


def test_mermaid_has_sections_edges_and_states() -> None:
    nodes = [
        graph.GraphNode(
            item_id="A-1",
            title='say "hi"',
            section="S",
            priority=1,
            dependencies=(),
            state="completed",
        ),
        graph.GraphNode(item_id="A-2", title="next", section="", priority=3, dependencies=("A-1",)),
    ]
    text = graph.mermaid(nodes)
    assert text.startswith("flowchart TD\n")
    assert 'subgraph s0["S"]' in text and "i_A_1 --> i_A_2" in text
    assert 'i_A_1["A-1 [P1] say #quot;hi#quot;"]:::completed' in text
    assert "classDef completed" in text
