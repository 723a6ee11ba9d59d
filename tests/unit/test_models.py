from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.config import Settings
from pipeline.models import SESSION_TRANSITIONS, SessionSpec, SessionState


def error_locations(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


@pytest.mark.parametrize("url", ["ftp://example.com", "file:///etc/passwd", "javascript:1",
                                 "not a url"])
def test_only_http_urls(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        SessionSpec.model_validate({"url": url})
    assert "url" in error_locations(info.value)


def test_malformed_steps_name_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        SessionSpec.model_validate({"url": "http://a.test", "steps": [
            {"action": "goto", "url": "http://a.test/x"}, {"action": "click"}]})
    assert "steps.1.click.selector" in error_locations(info.value)
    with pytest.raises(ValidationError) as info:
        SessionSpec.model_validate({"url": "http://a.test", "steps": [{"action": "teleport"}]})
    assert any(loc.startswith("steps.0") for loc in error_locations(info.value))


def test_demo_sessions_take_no_url() -> None:
    assert SessionSpec(demo=True).url is None
    with pytest.raises(ValidationError, match="demo session takes no url"):
        SessionSpec.model_validate({"demo": True, "url": "http://a.test"})
    with pytest.raises(ValidationError, match="url is required"):
        SessionSpec.model_validate({})


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        SessionSpec.model_validate({"url": "http://a.test", "colour": "red"})


def test_ended_states_are_final() -> None:
    for state in SessionState:
        assert (not SESSION_TRANSITIONS[state]) == state.ended


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RRSTREAM_PORT", "9123")
    monkeypatch.setenv("RRSTREAM_CHECKOUT_EVERY_MS", "2000")
    settings = Settings()
    assert settings.port == 9123 and settings.checkout_every_ms == 2000
    assert settings.sampling_input == "last" and settings.mask_passwords
    monkeypatch.setenv("RRSTREAM_PORT", "-4")
    with pytest.raises(ValidationError):
        Settings()


def test_privacy_options_take_css_selectors_and_refuse_what_is_not_one() -> None:
    spec = SessionSpec(url="http://127.0.0.1/", mask_all_inputs=True,
                       mask_text_selector=".secret, [data-private] > p",
                       block_selector='#card, iframe[src*="pay"]', record=False)
    assert spec.block_selector == '#card, iframe[src*="pay"]' and not spec.record
    assert SessionSpec(url="http://127.0.0.1/").record
    for bad in ["", "   ", "a{color:red}", "div[", 'a[href="x]', "p)", "<img>", "x" * 1_001]:
        with pytest.raises(ValidationError):
            SessionSpec(url="http://127.0.0.1/", block_selector=bad)


@pytest.mark.parametrize(("field", "value"), [
    ("max_duration_s", "60"), ("max_duration_s", 60.0), ("max_duration_s", True),
    ("idle_timeout_s", "30"), ("record", "false"), ("record", 0), ("demo", 1),
    ("mask_all_inputs", "yes"), ("close_when_done", "true"),
    ("viewport", {"width": "1280", "height": 800}),
    ("steps", [{"action": "wait", "ms": "100"}]),
    ("steps", [{"action": "type", "selector": "#q", "text": "x", "delay_ms": True}]),
])
def test_numbers_and_flags_are_taken_only_as_json_numbers_and_booleans(field: str,
                                                                      value: object) -> None:
    # A client sending "60" or 1 for `true` has a bug; taking it would hide it.
    with pytest.raises(ValidationError) as info:
        SessionSpec.model_validate({"url": "http://a.test", field: value})
    assert any(location.startswith(field) for location in error_locations(info.value))
    ok = SessionSpec.model_validate_json(
        '{"url": "http://a.test", "max_duration_s": 60, "record": false, '
        '"viewport": {"width": 1280, "height": 800}, "steps": [{"action": "wait", "ms": 5}]}')
    assert ok.max_duration_s == 60 and ok.record is False


def test_a_viewer_link_ttl_is_an_integer() -> None:
    from pipeline.models import ViewerLinkRequest
    with pytest.raises(ValidationError):
        ViewerLinkRequest.model_validate({"ttl_s": "600"})
    assert ViewerLinkRequest.model_validate({"ttl_s": 600}).ttl_s == 600
