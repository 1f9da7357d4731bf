"""Contracts between the engine, the page and the docs that no type checker sees.

Every event the engine can emit must be folded by the page's reducer and documented in
server/API.md (and listed in the README's ``--json`` line); the server adds one event type of
its own, ``status``. The files are parsed, so adding an event to ``engine/events.py`` and
forgetting one of the others fails here.
"""
import re
from pathlib import Path

import pytest

from engine.events import EVENT_TYPES

ROOT = Path(__file__).resolve().parent.parent
SERVER_EVENTS = {"status"}          # added by server/manager.py, not by the engine


def reducer_cases(source: str) -> set[str]:
    """The ``case "name":`` labels of ``reduceRun``'s switch in static/js/reducer.js."""
    body = re.search(r"^export function reduceRun\(.*?^}$", source, re.S | re.M)
    assert body, "reduceRun not found in static/js/reducer.js"
    return set(re.findall(r'^\s*case "(\w+)":', body.group(0), re.M))


def api_event_types(source: str) -> set[str]:
    """The backticked names of API.md's ``Event types: `a`, `b`, ... .`` sentence."""
    m = re.search(r"Event types:(.*?)\.(\s|$)", source, re.S)
    assert m, "no 'Event types:' list in server/API.md"
    return set(re.findall(r"`(\w+)`", m.group(1)))


def readme_json_events(source: str) -> set[str]:
    """The event names in the README's sentence on ``--json``."""
    m = re.search(r"`--json` prints each event \((.*?)\)", source, re.S)
    assert m, "no '`--json` prints each event (...)' sentence in README.md"
    return set(re.findall(r"`(\w+)`", m.group(1)))


ENGINE_EVENTS = sorted(EVENT_TYPES)


def test_the_engine_has_events_to_check():
    assert len(ENGINE_EVENTS) >= 9 and "run_finished" in ENGINE_EVENTS


@pytest.mark.parametrize("kind", ENGINE_EVENTS + sorted(SERVER_EVENTS))
def test_every_event_has_a_case_in_the_reducer(kind):
    cases = reducer_cases((ROOT / "static/js/reducer.js").read_text())
    assert kind in cases, f"static/js/reducer.js: reduceRun has no case for {kind!r}"


@pytest.mark.parametrize("kind", ENGINE_EVENTS + sorted(SERVER_EVENTS))
def test_every_event_is_listed_in_the_api(kind):
    listed = api_event_types((ROOT / "server/API.md").read_text())
    assert kind in listed, f"server/API.md: {kind!r} is missing from 'Event types:'"


@pytest.mark.parametrize("kind", ENGINE_EVENTS)
def test_every_engine_event_is_in_the_readme_json_line(kind):
    assert kind in readme_json_events((ROOT / "README.md").read_text()), kind


def test_nothing_listed_that_no_one_emits():
    """A case or a line for an event that no longer exists is stale too."""
    known = set(ENGINE_EVENTS) | SERVER_EVENTS
    assert reducer_cases((ROOT / "static/js/reducer.js").read_text()) <= known
    assert api_event_types((ROOT / "server/API.md").read_text()) <= known
    assert readme_json_events((ROOT / "README.md").read_text()) <= set(ENGINE_EVENTS)


def test_the_parsers_see_a_missing_event():
    """The checks above can fail: drop one case / one name and the parsers notice."""
    reducer = (ROOT / "static/js/reducer.js").read_text()
    assert "paused" not in reducer_cases(reducer.replace('case "paused":', 'case "pausd":'))
    api = (ROOT / "server/API.md").read_text()
    at = api.index("Event types:")
    assert "eval" not in api_event_types(api[:at] + api[at:].replace("`eval`, ", "", 1))


def test_reliability_citations_point_at_numbered_items_that_exist():
    """Tests cite docs/reliability.md by item number ("docs/reliability.md 10-19")."""
    doc = (ROOT / "docs/reliability.md").read_text()
    items = {int(n) for n in re.findall(r"^(\d+)\. ", doc, re.M)}
    assert items == set(range(1, 23))
    cited = set()
    for path in (ROOT / "tests").rglob("*.py"):
        text = path.read_text()
        if path.name != "test_contracts.py":         # this file names the old citation
            assert "RELIABILITY" not in text, f"{path} cites a RELIABILITY.md the repo lacks"
        for a, b in re.findall(r"docs/reliability\.md (\d+)(?:-(\d+))?", text):
            cited.update(range(int(a), int(b or a) + 1))
    assert cited and cited <= items, cited - items
