from __future__ import annotations

import re

from pipeline.demo_site import SITE_DIR
from pipeline.demo_workflow import demo_steps
from pipeline.steps import STEPS, GotoStep, WaitStep

SITE_URL = "http://127.0.0.1:4321"


def _static_ids() -> set[str]:
    ids: set[str] = set()
    for page in SITE_DIR.glob("*.html"):
        ids.update(re.findall(r'\bid="([^"]+)"', page.read_text()))
    return ids


def _scripts() -> str:
    return "\n".join(path.read_text() for path in SITE_DIR.glob("*.js"))


def test_steps_round_trip_through_the_step_schema() -> None:
    steps = demo_steps(SITE_URL)
    dumped = [step.model_dump(mode="json") for step in steps]
    assert STEPS.validate_python(dumped) == steps
    assert STEPS.validate_json(STEPS.dump_json(steps)) == steps


def test_workflow_starts_on_the_given_site_and_stays_there() -> None:
    steps = demo_steps(SITE_URL + "/")
    assert isinstance(steps[0], GotoStep)
    assert str(steps[0].url) == f"{SITE_URL}/index.html"
    for step in steps:
        if isinstance(step, GotoStep):
            assert str(step.url).startswith(SITE_URL)


def test_workflow_uses_every_kind_of_step_it_demonstrates() -> None:
    actions = {step.action for step in demo_steps(SITE_URL)}
    assert {"goto", "click", "fill", "type", "press", "scroll", "wait_for", "wait"} <= actions


def test_workflow_clicks_inside_the_cross_origin_widget() -> None:
    framed = [step for step in demo_steps(SITE_URL) if step.frame is not None]
    assert {step.frame for step in framed} == {"#widget"}
    assert any(step.action == "click" for step in framed)
    home = (SITE_DIR / "index.html").read_text()
    assert re.search(r'<iframe id="widget"[^>]*src="__WIDGET_ORIGIN__/widget.html"', home)


def test_workflow_types_the_name_and_submits_the_form() -> None:
    steps = demo_steps(SITE_URL)
    typed = [step for step in steps if step.action == "type" and step.selector == "#name"]
    assert [step.text for step in typed] == ["Ada Lovelace"]
    actions = [(step.action, getattr(step, "selector", None)) for step in steps]
    assert actions.index(("click", "#submit")) < actions.index(("wait_for", "#confirmation"))


def test_every_selected_id_exists_on_the_site() -> None:
    static = _static_ids()
    scripts = _scripts()
    for step in demo_steps(SITE_URL):
        for name in re.findall(r"#([\w-]+)", getattr(step, "selector", "") + (step.frame or "")):
            if name in static:
                continue
            # Ids the pages create as they run, like `widget-click-1`.
            prefix = re.sub(r"\d+$", "", name)
            assert prefix != name and f"`{prefix}${{" in scripts, f"no element #{name}"


def test_workflow_lasts_long_enough_to_watch() -> None:
    waited = sum(step.ms for step in demo_steps(SITE_URL) if isinstance(step, WaitStep))
    assert 12_000 <= waited <= 30_000
