"""Router: least-loaded serving instance with the model and a free slot, deterministic ties."""

from __future__ import annotations

import pytest

from sealfn.runtime.lifecycle import InstanceState
from sealfn.runtime.router import InstanceView, pick

S = InstanceState


def inst(
    id: str,
    in_flight: int = 0,
    *,
    state: InstanceState = S.IDLE,
    models: frozenset[str] = frozenset({"m"}),
    capacity: int = 2,
    last_used: float = 0.0,
) -> InstanceView:
    return InstanceView(
        id=id,
        state=state,
        models=models,
        in_flight=in_flight,
        capacity=capacity,
        last_used=last_used,
    )


@pytest.mark.parametrize(
    ("instances", "expected"),
    [
        pytest.param([], None, id="no-instances"),
        pytest.param([inst("a")], "a", id="single-idle"),
        pytest.param([inst("a", 1, state=S.WARM)], "a", id="single-warm-with-free-slot"),
        pytest.param([inst("a", 1, state=S.WARM), inst("b", 0)], "b", id="least-loaded"),
        pytest.param([inst("a", 2, state=S.WARM)], None, id="full"),
        pytest.param([inst("a", 3, state=S.WARM, capacity=2)], None, id="over-capacity"),
        pytest.param([inst("a", 2, state=S.WARM), inst("b", 1)], "b", id="skips-full"),
        pytest.param([inst("a", state=S.STARTING)], None, id="starting-not-serving"),
        pytest.param([inst("a", state=S.DRAINING)], None, id="draining-not-serving"),
        pytest.param([inst("a", state=S.GONE)], None, id="gone-not-serving"),
        pytest.param(
            [inst("a", state=S.DRAINING), inst("b", 1, state=S.WARM)], "b", id="skips-draining"
        ),
        pytest.param([inst("a", models=frozenset({"other"}))], None, id="model-missing"),
        pytest.param(
            [inst("a", models=frozenset({"other"})), inst("b", 1, models=frozenset({"m", "x"}))],
            "b",
            id="only-one-has-model",
        ),
        pytest.param(
            [inst("a", 1, capacity=4), inst("b", 1, capacity=2)],
            "a",
            id="load-relative-to-capacity",
        ),
        pytest.param(
            [inst("a", last_used=5.0), inst("b", last_used=9.0), inst("c", last_used=7.0)],
            "b",
            id="tie-most-recently-used",
        ),
        pytest.param(
            [inst("c", last_used=9.0), inst("a", last_used=9.0), inst("b", last_used=9.0)],
            "a",
            id="tie-smallest-id",
        ),
        pytest.param(
            [inst("a", 1, last_used=9.0), inst("b", 0, last_used=1.0)],
            "b",
            id="load-beats-recency",
        ),
    ],
)
def test_pick(instances: list[InstanceView], expected: str | None) -> None:
    assert pick(instances, "m") == expected


def test_pick_ignores_input_order() -> None:
    views = [inst("b", last_used=3.0), inst("a", last_used=3.0), inst("c", 1)]
    assert pick(views, "m") == pick(list(reversed(views)), "m") == "a"
