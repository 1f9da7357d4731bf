"""Tempo, Step, start paused and Continue in the run bar, in Chromium against a real server."""
from __future__ import annotations

from playwright.sync_api import expect

from .test_dashboard import design_mlp, open_dashboard
from .test_defects import shot, wait_state


def test_start_paused_step_tempo_stop_and_continue(page, server, artifacts):
    open_dashboard(page, server)
    design_mlp(page, train_limit="2000", epochs="2")
    page.get_by_label("start paused").check()
    page.get_by_role("button", name="Start", exact=True).click()
    wait_state(page, "s.status === 'paused'")
    step = page.get_by_role("button", name="Step", exact=True)
    expect(step).to_be_enabled()
    assert page.evaluate("window.__bpl.app.states.get(window.__bpl.watched()).progress.n") == 0
    step.click()
    wait_state(page, "s.progress.n === 1")
    step.click()
    wait_state(page, "s.progress.n === 2")
    expect(page.locator("#run-progress-text")).to_contain_text("step 2 / 64")
    tempo = page.get_by_label("Tempo: at most this many steps per second")
    tempo.select_option("10")
    wait_state(page, "s.tempo === 10")
    page.get_by_role("button", name="Resume").click()
    wait_state(page, "s.status === 'running' && s.progress.n >= 6")
    shot(page, artifacts, "tempo-running")
    page.get_by_role("button", name="Stop").click()
    wait_state(page, "s.status === 'stopped'")
    stopped_at = page.evaluate("window.__bpl.app.states.get(window.__bpl.watched()).progress.n")
    assert stopped_at < 64
    cont = page.get_by_role("button", name="Continue")
    expect(cont).to_be_enabled()
    cont.click()
    wait_state(page, "s.status === 'completed'")
    state = page.evaluate("""(() => { const s = window.__bpl.app.states.get(window.__bpl.watched());
        return {steps: Array.from(s.progress.step.view()), marks: s.continuations}; })()""")
    assert state["steps"] == list(range(1, 65))           # one curve, no gap, no repeat
    assert len(state["marks"]) == 1 and state["marks"][0]["step"] <= stopped_at
    expect(cont).to_be_disabled()                           # a completed run forks instead
    shot(page, artifacts, "tempo-continued")
