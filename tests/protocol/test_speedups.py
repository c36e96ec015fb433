"""The C accelerator gives exactly the pure-Python results (and is built in CI)."""

from __future__ import annotations

import importlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from websock.protocol import frames
from websock.protocol.frames import apply_mask_python, masked_frame_python

try:
    speedups = importlib.import_module("websock._speedups")
except ImportError:  # pragma: no cover - depends on the build
    speedups = None


def test_built_in_ci() -> None:
    # A silently failed build would leave only the fallback tested: CI must have both.
    if os.environ.get("CI") and speedups is None:
        pytest.fail("websock._speedups was not built: is a C compiler installed?")


def test_frames_use_accelerator_unless_pure_python_forced() -> None:
    if os.environ.get("WEBSOCK_PURE_PYTHON") or speedups is None:
        assert frames.apply_mask is apply_mask_python
        assert frames.masked_frame is masked_frame_python
    else:
        assert frames.apply_mask is speedups.apply_mask
        assert frames.masked_frame is speedups.masked_frame


needs_speedups = pytest.mark.skipif(speedups is None, reason="websock._speedups not built")


@needs_speedups
@given(data=st.binary(max_size=300), mask=st.binary(min_size=4, max_size=4))
def test_apply_mask_matches_python(data: bytes, mask: bytes) -> None:
    assert speedups is not None
    assert speedups.apply_mask(data, mask) == apply_mask_python(data, mask)


@needs_speedups
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_apply_mask_accepts_buffers(kind: type) -> None:
    assert speedups is not None
    data = bytes(range(256)) * 5
    assert speedups.apply_mask(kind(data), b"\x01\x02\x03\x04") == apply_mask_python(
        data, b"\x01\x02\x03\x04"
    )


@needs_speedups
def test_apply_mask_rejects_bad_mask() -> None:
    assert speedups is not None
    with pytest.raises(ValueError, match="4 bytes"):
        speedups.apply_mask(b"abc", b"\x00\x00\x00")
    with pytest.raises(TypeError):
        speedups.apply_mask("text", b"\x00\x00\x00\x00")  # type: ignore[arg-type]


@needs_speedups
@given(
    prefix=st.binary(max_size=14),
    data=st.binary(max_size=300),
    mask=st.binary(min_size=4, max_size=4),
)
def test_masked_frame_matches_python(prefix: bytes, data: bytes, mask: bytes) -> None:
    assert speedups is not None
    assert speedups.masked_frame(prefix, data, mask) == masked_frame_python(prefix, data, mask)


@needs_speedups
def test_masked_frame_rejects_bad_arguments() -> None:
    assert speedups is not None
    with pytest.raises(ValueError, match="4 bytes"):
        speedups.masked_frame(b"", b"abc", b"\x00")
    with pytest.raises(TypeError):
        speedups.masked_frame(b"", b"abc")  # type: ignore[call-arg]
