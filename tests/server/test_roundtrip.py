"""Valid paths through a real server (loopback TCP) with the project's client."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from oldphoto_model import RestoreOptions
from server.client import E_BAD_OPTION, Client, ServerError

from .helpers import random_image, random_mask


def grown(mask, px):
    """The mask's defects (>= 128) grown by ``px`` pixels, as the pipeline grows them."""
    import torch

    from oldphoto_model.archs.nonlocal_block import dilate
    return dilate(torch.from_numpy(mask >= 128), px).numpy()


def _restore(address, img, mask=None, **kw):
    h, w, c = img.shape
    with Client(address, timeout=60) as cl:
        data, meta = cl.restore(img.tobytes(), w, h, c, mask=None if mask is None else mask.tobytes(), **kw)
    return np.frombuffer(data, np.uint8).reshape(h, w, c), meta


@pytest.mark.parametrize("channels", [1, 2, 3, 4], ids=["gray", "gray+alpha", "rgb", "rgba"])
@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask"])
def test_round_trip_matches_in_process(address, reference, channels, with_mask):
    h, w = 37, 52            # not multiples of 4: the server pads and crops like the pipeline
    img = random_image(channels, h, w, channels)
    mask = random_mask(channels, h, w) if with_mask else None
    out, meta = _restore(address, img, mask)
    expected = reference.restore(img, mask)
    assert out.shape == img.shape and meta["channels"] == channels
    assert (meta["width"], meta["height"]) == (w, h)
    np.testing.assert_array_equal(out, expected)
    assert not np.array_equal(out, img)            # the model did run
    if channels in (2, 4):
        np.testing.assert_array_equal(out[..., -1], img[..., -1])   # alpha untouched


@pytest.mark.parametrize("channels", [1, 3, 4], ids=["gray", "rgb", "rgba"])
def test_16_bit_pixels_keep_their_depth(address, reference, channels):
    """dtype u16 (little-endian on the wire): the result comes back in 16 bits, the
    same as the in-process restore of the uint16 array, not a scaled 8-bit one."""
    h, w = 29, 34
    img = (random_image(20 + channels, h, w, channels).astype(np.uint16) * 257
           + np.random.default_rng(channels).integers(0, 257, (h, w, channels))).astype(np.uint16)
    mask = random_mask(channels, h, w)
    with Client(address, timeout=60) as cl:
        assert cl.supports_dtype("u16")
        data, meta = cl.restore(img.astype("<u2").tobytes(), w, h, channels, mask=mask.tobytes(), dtype="u16")
    out = np.frombuffer(data, "<u2").reshape(h, w, channels)
    assert meta["dtype"] == "u16"
    np.testing.assert_array_equal(out, reference.restore(img, mask))
    assert np.count_nonzero(out % 257) > out.size // 2          # values between the 8-bit steps
    if channels == 4:
        np.testing.assert_array_equal(out[..., 3], img[..., 3])


def test_16_bit_pixels_of_the_wrong_size_are_refused(address):
    with Client(address, timeout=10) as cl:
        with pytest.raises(Exception) as e:
            cl.restore(bytes(10 * 10 * 3), 10, 10, 3, dtype="u16")   # u8-sized frame
    assert "u16 needs 600" in str(e.value)


def test_mask_changes_the_result(address):
    img = random_image(5, 40, 40, 3)
    a, _ = _restore(address, img)
    b, _ = _restore(address, img, random_mask(5, 40, 40))
    assert not np.array_equal(a, b)


def test_mask_threshold_option(address, reference):
    img = random_image(6, 32, 32, 3)
    mask = random_mask(6, 32, 32)            # holds 100, 200 and 255
    out, meta = _restore(address, img, mask, options={"mask_threshold": 250})
    assert meta["options"]["mask_threshold"] == 250
    np.testing.assert_array_equal(out, reference.restore(img, mask, RestoreOptions(mask_threshold=250)))
    assert not np.array_equal(out, reference.restore(img, mask, RestoreOptions(mask_threshold=90)))


def test_restrict_to_mask_changes_only_the_selection(address, reference):
    img = random_image(7, 36, 44, 4)
    mask = random_mask(7, 36, 44)
    # without growth and tone matching the blend is plain: original * (1 - a) + restored * a
    plain = {"restrict_to_mask": True, "grow": 0, "match_tone": False}
    out, _ = _restore(address, img, mask, options=plain)
    # (the whole photo's black-point and automatic tone corrections do not apply to a selection's fill)
    full = reference.restore(img, mask, RestoreOptions(grow=0, black_point=0.0, auto_tone=0.0))
    outside, inside = mask == 0, mask == 255
    np.testing.assert_array_equal(out[outside], img[outside])
    np.testing.assert_array_equal(out[inside], full[inside])
    feather = mask == 100                    # 100/255 of the way from original to restored
    want = np.rint(img[feather].astype(float) + (full[feather].astype(float) - img[feather]) * 100 / 255)
    # the blend runs in float before rounding, the expectation from rounded pixels: ±1 level
    assert np.abs(out[feather].astype(int) - want).max() <= 1
    # the product's default blend: the same restore path as in-process
    out, _ = _restore(address, img, mask, options={"restrict_to_mask": True})
    np.testing.assert_array_equal(out, reference.restore(img, mask, RestoreOptions(restrict_to_mask=True)))
    np.testing.assert_array_equal(out[outside & (grown(mask, 1) == 0)], img[outside & (grown(mask, 1) == 0)])


def test_unknown_option_is_a_typed_error(address):
    with pytest.raises(ServerError) as e:
        _restore(address, random_image(1, 8, 8, 3), options={"strength": 2})
    assert e.value.code == E_BAD_OPTION and "strength" in e.value.message


def test_echo_returns_the_pixels(address):
    img = random_image(9, 50, 30, 4)
    with Client(address) as cl:
        assert cl.echo(img.tobytes(), 30, 50, 4) == img.tobytes()


def test_progress_events_arrive_in_order(address):
    events = []
    _restore(address, random_image(3, 64, 64, 3), random_mask(3, 64, 64),
             progress=lambda f, s: events.append((f, s)))
    stages = [s for i, (_, s) in enumerate(events) if i == 0 or events[i - 1][1] != s]
    assert stages == ["queued", "start", "encode", "map", "map-tail", "decode", "done"]
    assert len(events) > 30, "the pipeline reports per layer"
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_info_describes_the_server(address, weights_path):
    with Client(address) as cl:
        info = cl.info()
    assert info["protocol"] == 2 and info["device"] == "cpu" and info["precision"] == "fp32"
    assert info["weights"]["name"] == weights_path.name and len(info["weights"]["sha256"]) == 64
    assert "path" not in info["weights"] and "pid" not in info     # nothing private to a client
    assert info["weights"]["metadata"]["purpose"].startswith("test")
    assert info["limits"]["max_pixels"] == 1_000_000
    assert set(info["options"]) == {"mask_threshold", "restrict_to_mask", "grow", "match_tone", "detail", "tone",
                                    "sharpen", "black_point", "auto_tone", "learned_fill"}
    assert {"ping", "info", "restore", "cancel"} <= set(info["ops"])


def test_eight_concurrent_clients_get_their_own_results(address, reference):
    n_clients, n_requests = 8, 3
    results: dict = {}
    errors: list = []

    def job(k):
        try:
            with Client(address, timeout=120) as cl:
                for r in range(n_requests):
                    seed = 100 + k * n_requests + r
                    c = 1 + seed % 4
                    h, w = 20 + seed % 13, 24 + (seed * 7) % 17     # a different size per request
                    img = random_image(seed, h, w, c)
                    mask = random_mask(seed, h, w) if seed % 2 else None
                    data, meta = cl.restore(img.tobytes(), w, h, c, None if mask is None else mask.tobytes())
                    results[seed] = (img, mask, np.frombuffer(data, np.uint8).reshape(h, w, c))
        except Exception as e:   # surfaced below; a thread cannot fail the test itself
            errors.append(e)

    threads = [threading.Thread(target=job, args=(k,)) for k in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    assert len(results) == n_clients * n_requests
    for seed, (img, mask, out) in results.items():
        np.testing.assert_array_equal(out, reference.restore(img, mask), err_msg=f"request {seed}")
