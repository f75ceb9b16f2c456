"""Shared Hypothesis strategies: JSON values as orjson reads them, text that JSON can carry."""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["json_values", "safe_text"]

# orjson refuses lone surrogates, so text that came off the wire never holds them.
safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | safe_text
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(safe_text, inner, max_size=4),
    max_leaves=12,
)
