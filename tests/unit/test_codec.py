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


def picture_batch(i: int, canvas: int) -> bytes:
    """A canvas picture as rrweb's fps sampling sends it: clearRect, then one WebP."""
    base64 = f"UklGR{canvas:04d}{i:06d}" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo" * (20 + i % 7)
    return orjson.dumps([
        {"type": 3, "timestamp": 1_700_000_000_000 + i * 25,
         "data": {"source": 9, "id": canvas, "type": 0, "commands": [
             {"property": "clearRect", "args": [0, 0, 300, 150]},
             {"property": "drawImage", "args": [{"rr_type": "ImageBitmap", "args": [
                 {"rr_type": "Blob", "data": [{"rr_type": "ArrayBuffer", "base64": base64}],
                  "type": "image/webp"}]}, 0, 0]}]}}
    ]) + b"\n"


def test_a_sealed_deflate_payload_can_be_left_out_of_its_segment() -> None:
    # Pictures of two canvases among mutations that repeat each other (so later payloads
    # would refer back, across the pictures, were they not sealed).
    encoder, stream = make_encoder("deflate-raw"), []
    for i in range(120):
        if i % 3 == 1:
            data = picture_batch(i, 7 + i % 2)
            stream.append((data, True, encoder.encode(data, segment_start=False, seal=True)))
        else:
            data = mutation_batch(i % 9, 3)
            stream.append((data, False, encoder.encode(data, segment_start=i == 0)))
    # Every picture but each canvas's last left out: the rest decodes, byte for byte.
    last = {7: max(i for i in range(120) if i % 3 == 1 and 7 + i % 2 == 7),
            8: max(i for i in range(120) if i % 3 == 1 and 7 + i % 2 == 8)}
    decoder = make_decoder("deflate-raw")
    kept = 0
    for i, (data, picture, payload) in enumerate(stream):
        if picture and i not in last.values():
            continue
        assert decoder.decode(payload, segment_start=i == 0) == data
        kept += 1
    assert kept == 120 - 40 + 2


def test_unsealed_payloads_cannot_be_left_out() -> None:
    # The control: the same stream with sync flushes only breaks when a picture is missing.
    import zlib

    encoder = make_encoder("deflate-raw")
    payloads = [encoder.encode(mutation_batch(0, 3), segment_start=True),
                encoder.encode(picture_batch(1, 7), segment_start=False),
                encoder.encode(picture_batch(1, 7) + mutation_batch(0, 3), segment_start=False)]
    decoder = make_decoder("deflate-raw")
    decoder.decode(payloads[0], segment_start=True)
    with pytest.raises(zlib.error):
        decoder.decode(payloads[2], segment_start=False)


def test_only_deflate_raw_can_seal() -> None:
    assert make_encoder("deflate-raw").can_seal
    assert not make_encoder("lz4-frame").can_seal
