"""A session started with a Checkpoint (its previous actor died) continues where it was:
the page at the checkpoint's URL, earlier steps as they were, the running one again
(real Chromium, no Ray)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from pipeline.browser_host import BrowserHost
from pipeline.config import Settings
from pipeline.demo_workflow import demo_steps
from pipeline.models import (
    Checkpoint,
    ControlAction,
    ControlChange,
    SessionSpec,
    SessionState,
    StepState,
    StepStatus,
)
from pipeline.session import BrowserSession
from pipeline.steps import ClickStep, WaitStep
from tests.integration.browser_procs import until
from tests.integration.fault_site import FaultSite
from tests.integration.sinks import ListSink
from tests.integration.test_session_supervision import Supervisor


async def test_a_resumed_session_opens_the_last_url_and_reruns_the_running_step(
        browser_host: BrowserHost, fault_site: FaultSite) -> None:
    steps = [{"action": "click", "selector": "#add"},
             {"action": "goto", "url": fault_site.page("/plain?name=two")},
             {"action": "click", "selector": "#add"}]
    where_it_was = fault_site.page("/plain?name=where-it-was")
    checkpoint = Checkpoint(url=where_it_was, step=1, version=5, steps=[
        StepStatus(index=0, action="click", state=StepState.DONE, started_at=10.0,
                   ended_at=11.0, attempts=1),
        StepStatus(index=1, action="goto", state=StepState.RUNNING, started_at=12.0,
                   attempts=1),
        StepStatus(index=2, action="click"),
    ])
    supervisor, sink = Supervisor(), ListSink()
    session = BrowserSession("resumed", Settings(), sink, host=browser_host, supervisor=supervisor)
    status = await session.start(SessionSpec(url=fault_site.page("/plain?name=start"), steps=steps),
                                 resume=checkpoint)
    assert status.state is SessionState.RUNNING, status
    await until(lambda: session.status().state is SessionState.IDLE, "workflow done")
    status = session.status()
    assert [s.state for s in status.steps] == [StepState.DONE] * 3
    assert (status.steps[0].started_at, status.steps[0].ended_at) == (10.0, 11.0), (
        "a step done before the actor died is not run again")
    assert [s.attempts for s in status.steps] == [1, 2, 1]
    assert status.url == fault_site.page("/plain?name=two")
    text = sink.text()
    assert "where-it-was" in text and ">start<" not in text, "it opened the checkpoint's URL"
    clicks = [a for e in sink.events() if e["type"] == 3 and e["data"]["source"] == 0
              for a in e["data"]["adds"] if a["node"].get("textContent") == "added"]
    assert len(clicks) == 1, "only the last click ran"
    assert supervisor.checkpoints[0].version == 6, "versions go on from the checkpoint's"
    assert supervisor.checkpoints[0].url == fault_site.page("/plain?name=where-it-was")
    await session.stop()


async def test_a_demo_session_resumes_on_its_new_demo_site(browser_host: BrowserHost) -> None:
    steps = demo_steps("http://127.0.0.1:1")  # the old demo fault_site, gone with its actor
    home = len(steps) - 3  # "back home": a click on the nav bar, then the widget
    checkpoint = Checkpoint(
        url="http://127.0.0.1:1/about.html?from=old#top", step=home, version=40,
        steps=[*(StepStatus(index=i, action=s.action, state=StepState.DONE, attempts=1)
                 for i, s in enumerate(steps[:home])),
               StepStatus(index=home, action="click", state=StepState.RUNNING, attempts=1)])
    supervisor = Supervisor()
    session = BrowserSession("demo", Settings(), ListSink(), host=browser_host,
                             supervisor=supervisor)
    status = await session.start(SessionSpec(demo=True), resume=checkpoint)
    assert status.state is SessionState.RUNNING, status
    origin = urlsplit(status.start_url).netloc
    assert origin != "127.0.0.1:1"
    await until(lambda: session.status().state is SessionState.IDLE, "workflow done")
    status = session.status()
    assert urlsplit(status.url).netloc == origin and status.url.endswith("/index.html")
    opened = supervisor.checkpoints[0].url
    assert opened == f"http://{origin}/about.html?from=old#top", opened
    assert all(s.state is StepState.DONE for s in status.steps), status.steps
    assert [s.attempts for s in status.steps[home:]] == [2, 1, 1]
    await session.stop()


async def test_a_session_resumed_while_paused_stays_paused_with_its_added_steps(
        browser_host: BrowserHost, fault_site: FaultSite) -> None:
    """The Checkpoint of a paused session with steps added to it, as the registry keeps
    it: the new actor opens the page paused, lists the added steps and the control log,
    and runs the added steps once resumed."""
    checkpoint = Checkpoint(
        url=fault_site.page("/plain?name=paused"), step=1, version=9, paused=True,
        steps=[StepStatus(index=0, action="wait", state=StepState.DONE, attempts=1),
               StepStatus(index=1, action="click")],
        added=[ClickStep(selector="#add")],
        control=[ControlChange(action=ControlAction.PAUSE, by="api", at=1.0),
                 ControlChange(action=ControlAction.STEPS, by="api", at=2.0, steps=1)])
    supervisor, sink = Supervisor(), ListSink()
    session = BrowserSession("paused", Settings(), sink, host=browser_host,
                             supervisor=supervisor)
    spec = SessionSpec(url=fault_site.page("/plain?name=start"), steps=[WaitStep(ms=10)])
    status = await session.start(spec, resume=checkpoint)
    assert status.state is SessionState.PAUSED, status
    assert [s.state for s in status.steps] == [StepState.DONE, StepState.PENDING]
    assert [c.action for c in status.control] == ["pause", "steps"]
    await asyncio.sleep(0.5)
    assert session.status().steps[1].state is StepState.PENDING, "nothing runs while paused"
    resumed = await session.resume("key:0123456789ab")
    assert resumed.state is SessionState.RUNNING
    await until(lambda: session.status().state is SessionState.IDLE, "workflow done")
    status = session.status()
    assert status.steps[1].state is StepState.DONE
    assert [(c.action, c.by) for c in status.control][-1] == ("resume", "key:0123456789ab")
    assert not supervisor.checkpoints[-1].paused and supervisor.checkpoints[-1].added
    tags = [e["data"]["tag"] for e in sink.events() if e["type"] == 5]
    assert tags.count("rrstream.control") == 1, "the resume (earlier ones were the old actor's)"
    await session.stop()
