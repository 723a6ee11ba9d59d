"""The API's error answers for what the fuzz of the REST API (tests/integration/
test_api_fuzz.py) sent: each on an app of its own with the API's error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from pipeline.models import ViewerLinkRequest
from serve.errors import install_error_handlers, responses


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/links", status_code=201, responses=responses(401))
    async def link(body: ViewerLinkRequest) -> dict[str, int]:
        return {"ttl_s": body.ttl_s}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                 base_url="http://api.test") as http:
        yield http


@pytest.mark.parametrize(("body", "words"), [
    (b"\x9d\xf3\xe4", "'utf-8' codec can't decode byte 0x9d in position 0"),
    (b'"\xff"', "can't decode byte 0xff"),
    (b"[" * 100_000, "maximum recursion depth exceeded"),
], ids=["not-utf8", "not-utf8-in-a-string", "nested-too-deep"])
async def test_a_body_that_is_no_utf8_json_is_a_422_in_words(client: httpx.AsyncClient,
                                                             body: bytes, words: str) -> None:
    answer = await client.post("/links", content=body,
                               headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    message = answer.json()["message"]
    assert message.startswith("body: not readable as JSON (") and words in message, message
    assert answer.json()["detail"] == message


async def test_malformed_json_stays_the_validation_422(client: httpx.AsyncClient) -> None:
    answer = await client.post("/links", content=b'{"ttl_s": 5',
                               headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["message"] == "body.11: JSON decode error"
    assert (await client.post("/links", json={"ttl_s": 5})).json() == {"ttl_s": 5}


@pytest.mark.parametrize("body", [
    b'{"ttl_s": -232888589820394045802807296}',
    b'{"ttl_s": -4919359666303000000000, "label": "\\ud9c5"}',
    b'{"ttl_s": 5, "label": {"\\udbba": "\\ud830"}}',
], ids=["integer-past-64-bits", "lone-surrogate", "lone-surrogate-key"])
async def test_what_a_malformed_body_sent_comes_back_in_a_422_not_a_500(
        client: httpx.AsyncClient, body: bytes) -> None:
    answer = await client.post("/links", content=body,
                               headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["message"]
