"""The kit's import check (bench/gpu_kit/import_check.py): it must catch what stopped
the first device run, a hard import of a distribution neither carried nor there."""

from __future__ import annotations

import importlib.metadata

from packaging.utils import canonicalize_name

from bench.gpu_kit import prepare
from bench.gpu_kit.import_check import check_imports


def test_a_hard_import_of_a_distribution_not_carried_fails_here() -> None:
    machine = set(prepare.machine_packages())
    # Carry everything this environment has except cryptography, which the API's
    # secret box imports at module level (models/infra/encryption.py).
    here = importlib.metadata.distributions()
    carried: set[str] = (
        {str(canonicalize_name(dist.metadata["Name"])) for dist in here}
        - machine
        - {"cryptography"}
    )
    ok, detail = check_imports(machine, carried, ("bench.gpu_kit.farm_stage",))
    assert not ok
    assert "No module named 'cryptography' (not on the GPU machine)" in detail
    assert "models/infra/encryption.py" in detail


def test_cryptography_is_a_kit_requirement() -> None:
    assert any(r.startswith("cryptography") for r in prepare.REQUIREMENTS)
