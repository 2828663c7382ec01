"""Hypothesis strategies that damage a valid file: truncate it, flip bytes in it, append junk."""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st


@st.composite
def corrupted(draw: st.DrawFn, data: bytes, hot: Sequence[int] = ()) -> bytes:
    """`data` truncated, with 1-3 bytes flipped, or with junk appended.

    `hot` lists offsets worth aiming at (headers, length fields): flips land on or just after
    one of them half of the time, elsewhere uniformly.
    """
    kind = draw(st.sampled_from(("truncate", "flip", "append")))
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if kind == "append":
        return data + draw(st.binary(min_size=1, max_size=64))
    out = bytearray(data)
    anywhere = st.integers(0, len(data) - 1)
    near_hot = (st.tuples(st.sampled_from(list(hot)), st.integers(0, 9))
                .map(lambda t: min(t[0] + t[1], len(data) - 1)))
    offsets = draw(st.lists(st.one_of(anywhere, near_hot) if hot else anywhere,
                            min_size=1, max_size=3, unique=True))
    for offset in offsets:     # distinct offsets: two flips can never cancel out
        out[offset] ^= draw(st.integers(1, 255))
    return bytes(out)
