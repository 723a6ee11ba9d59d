from __future__ import annotations

import orjson
import pytest

from pipeline.codec import (
    CODECS,
    Lz4FrameDecoder,
    Lz4FrameEncoder,
    make_decoder,
    make_encoder,
)


def mutation_batch(i: int, events: int) -> bytes:
    return orjson.dumps([
        {"type": 3, "timestamp": 1_700_000_000_000 + i * 25 + k,
         "data": {"source": 0, "texts": [], "attributes": [], "removes": [],
                  "adds": [{"parentId": 7, "nextId": None,
                            "node": {"type": 2, "tagName": "li", "id": 100 + i * 10 + k,
                                     "childNodes": [], "attributes": {"class": "item"}}}]}}
        for k in range(events)
    ]) + b"\n"


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_round_trip_across_segments_and_blocks(codec: str) -> None:
    encoder, decoder = make_encoder(codec), make_decoder(codec)
    big = orjson.dumps([{"type": 2, "data": {"html": "<div>" * 40_000}}]) + b"\n"
    stream = [(big, True)] + [(mutation_batch(i, 1 + i % 5), False) for i in range(300)]
    stream += [(big, True)] + [(mutation_batch(i, 3), False) for i in range(50)]
    for data, start in stream:
        payload = encoder.encode(data, segment_start=start)
        assert decoder.decode(payload, segment_start=start) == data


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_a_decoder_can_join_at_a_later_segment(codec: str) -> None:
    encoder = make_encoder(codec)
    payloads = [encoder.encode(mutation_batch(i, 2), segment_start=i in (0, 40))
                for i in range(80)]
    late = make_decoder(codec)
    out = [late.decode(p, segment_start=i == 40) for i, p in enumerate(payloads[40:], start=40)]
    assert out == [mutation_batch(i, 2) for i in range(40, 80)]


def test_a_decoder_refuses_to_start_mid_segment() -> None:
    encoder = Lz4FrameEncoder()
    encoder.encode(mutation_batch(0, 1), segment_start=True)
    with pytest.raises(ValueError, match="segment start"):
        Lz4FrameDecoder().decode(encoder.encode(mutation_batch(1, 1), segment_start=False),
                                 segment_start=False)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_linked_context_beats_compressing_batches_alone(codec: str) -> None:
    import lz4.frame

    batches = [mutation_batch(i, 2) for i in range(200)]
    encoder = make_encoder(codec)
    linked = sum(len(encoder.encode(b, segment_start=i == 0)) for i, b in enumerate(batches))
    alone = sum(len(lz4.frame.compress(b)) for b in batches)
    raw = sum(map(len, batches))
    assert linked < alone
    assert raw / linked > 4


def test_unknown_codec_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown codec 'zstd'"):
        make_encoder("zstd")
    with pytest.raises(ValueError, match="unknown codec"):
        make_decoder("zstd")
