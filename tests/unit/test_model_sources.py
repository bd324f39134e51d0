"""Model sources: which kind of source a model string names (tiny, simulated, one file,
a folder, a Hub repo), what is refused, and the fingerprint of each kind, which changes
when the model's files do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from models.domain.model_sources import ModelSource, parse_model_source
from worker.model_loading import model_fingerprint
from worker.tiny_sdxl import ensure_tiny_sdxl

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tiny-sdxl", ModelSource("tiny", "tiny-sdxl")),
        ("simulated", ModelSource("simulated", "simulated", 0.0)),
        ("simulated:0.5", ModelSource("simulated", "simulated", 0.5)),
        (
            "/models/animagine-xl-3.1.safetensors",
            ModelSource("single_file", "/models/animagine-xl-3.1.safetensors"),
        ),
        ("models/old.CKPT", ModelSource("single_file", "models/old.CKPT")),
        ("/models/animagine-xl-3.1", ModelSource("folder", "/models/animagine-xl-3.1")),
        ("./models/x", ModelSource("folder", "./models/x")),
        ("~/models/x", ModelSource("folder", "~/models/x")),
        ("cagliostrolab/animagine-xl-3.1", ModelSource("hub", "cagliostrolab/animagine-xl-3.1")),
        ("org/name@refs/pr/1", ModelSource("hub", "org/name@refs/pr/1")),
    ],
)
def test_parse_model_source(text: str, expected: ModelSource) -> None:
    assert parse_model_source(text) == expected


def test_existing_relative_directory_is_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert parse_model_source("org/name") == ModelSource("folder", "org/name")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "animagine",
        "a/b/c",
        "org/-name",
        "org/na--me",
        "simulated:-1",
        "simulated:x",
        "simulated:nan",
    ],
)
def test_parse_model_source_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text.partition(":")[2] or text))):
        parse_model_source(text)


def test_fingerprints(tmp_path: Path) -> None:
    assert model_fingerprint(parse_model_source("tiny-sdxl")) == "tiny-sdxl:v1"
    assert model_fingerprint(parse_model_source("simulated:0.25")) == "simulated:0.25"
    assert model_fingerprint(parse_model_source("org/name@v2")) == "hub:org/name@v2"

    folder = ensure_tiny_sdxl(tmp_path / "m")
    first = model_fingerprint(ModelSource("folder", str(folder)))
    assert re.fullmatch(r"folder:m:[0-9a-f]{12}", first)
    assert model_fingerprint(ModelSource("folder", str(folder))) == first
    unet_config = folder / "unet" / "config.json"
    unet_config.write_text(
        unet_config.read_text().replace('"sample_size": 128', '"sample_size": 96')
    )
    assert model_fingerprint(ModelSource("folder", str(folder))) != first


def test_hub_fingerprint_resolves_the_cached_commit(tmp_path: Path) -> None:
    # The Hugging Face cache layout, as huggingface_hub writes it.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--org--name"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model_index.json").write_text("{}")
    source = parse_model_source("org/name")
    assert model_fingerprint(source, cache_dir=tmp_path) == f"hub:org/name@{commit}"
    assert model_fingerprint(source) == "hub:org/name"
