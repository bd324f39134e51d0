"""Styles (A1111's styles.csv semantics, the Animagine demo's presets) and the library files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.domain.prompt_pipeline import DEFAULT_LIBRARY
from models.domain.styles import ANIMAGINE_STYLES, Style, apply_style, merge_prompts, merged_length
from models.infra.prompt_library import PromptLibraryError, read_styles, read_wildcards
from models.infra.settings import Settings


@pytest.mark.parametrize(
    ("style_text", "text", "expected"),
    [
        ("{prompt}, anime style", "1girl", "1girl, anime style"),
        ("cinematic still {prompt} . film grain", "1girl", "cinematic still 1girl . film grain"),
        ("{prompt} and {prompt}", "a", "a and a"),
        ("anime style", " 1girl ", "1girl, anime style"),  # no placeholder: appended
        ("anime style", "", "anime style"),
        ("", "1girl", "1girl"),
    ],
)
def test_merge_prompts_is_a1111s(style_text: str, text: str, expected: str) -> None:
    assert merge_prompts(style_text, text) == expected
    assert merged_length(style_text, text) == len(expected)


def test_a_style_wraps_the_prompt_and_extends_the_negative() -> None:
    anime = DEFAULT_LIBRARY.styles["Anime"]
    prompt, negative = apply_style(anime, "1girl, solo", "lowres")
    assert prompt == (
        "1girl, solo, anime artwork, anime style, key visual, vibrant, studio anime, highly "
        "detailed"
    )
    assert negative == (
        "lowres, nsfw, photo, deformed, black and white, realism, disfigured, low contrast"
    )
    assert apply_style(DEFAULT_LIBRARY.styles["(None)"], "a", "b") == ("a", "b")


def test_the_shipped_styles_are_the_animagine_demos() -> None:
    assert [s.name for s in ANIMAGINE_STYLES] == [
        "(None)",
        "Cinematic",
        "Photographic",
        "Anime",
        "Manga",
        "Digital Art",
        "Pixel art",
        "Fantasy art",
        "Neonpunk",
        "3D Model",
    ]
    for style in ANIMAGINE_STYLES[1:]:
        assert style.prompt.startswith("{prompt}, ") and "  " not in style.prompt
        assert style.negative_prompt.startswith("nsfw, ") and "  " not in style.negative_prompt


def test_styles_from_a1111s_csv(tmp_path: Path) -> None:
    csv = tmp_path / "styles.csv"
    # As A1111 writes it: a BOM, a header, quoted fields with commas, an extra column.
    csv.write_text(
        "\ufeffname,prompt,negative_prompt,description\n"
        '"Watercolor","watercolor painting of {prompt}, soft","photo, 3d",x\n'
        "Plain,flat colors,,\n"
        ",nameless,,\n",
        encoding="utf-8",
    )
    styles = read_styles(csv)
    assert styles == {
        "Watercolor": Style("Watercolor", "watercolor painting of {prompt}, soft", "photo, 3d"),
        "Plain": Style("Plain", "flat colors", ""),
    }


def test_styles_from_json_like_the_api_lists_them(tmp_path: Path) -> None:
    path = tmp_path / "styles.json"
    path.write_text(json.dumps([{"name": "Ink", "prompt": "{prompt}, ink", "negative_prompt": ""}]))
    assert read_styles(path) == {"Ink": Style("Ink", "{prompt}, ink", "")}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "No such file"),
        ("bad.csv", "title,prompt\nx,y\n", "must name the columns"),
        ("bad.json", '{"name": "x"}', "a JSON styles file is a list"),
        ("empty.csv", "name,prompt,negative_prompt\n", "no style"),
    ],
)
def test_a_bad_styles_file_stops_the_process_naming_the_setting(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(PromptLibraryError, match=message):
        read_styles(path)
    with pytest.raises(ValueError, match="FARM_STYLES_FILE"):
        Settings(styles_file=path)


def test_wildcard_lists_from_a_folder(tmp_path: Path) -> None:
    (tmp_path / "animals").mkdir()
    (tmp_path / "season.txt").write_text("# seasons\nsummer\n\n autumn \n#winter\n")
    (tmp_path / "animals" / "cats.txt").write_text("tabby\ncalico\n")
    (tmp_path / "artists.yaml").write_text(
        "artists:\n  finnish:\n    - Akseli Gallen-Kallela\n  dutch: [Piet Mondrian]\n"
        "  1234: 5678\n"
    )
    (tmp_path / "animals" / "more.json").write_text(json.dumps({"dogs": ["shiba", "corgi"]}))
    (tmp_path / "notes.md").write_text("not a list")
    assert read_wildcards(tmp_path) == {
        "season": ("summer", "autumn"),
        "animals/cats": ("tabby", "calico"),
        "artists/finnish": ("Akseli Gallen-Kallela",),
        "artists/dutch": ("Piet Mondrian",),
        "animals/dogs": ("shiba", "corgi"),
    }
    library = Settings(wildcards_dir=tmp_path).prompt_library
    assert library.wildcards["season"] == ("summer", "autumn")
    assert library.styles == DEFAULT_LIBRARY.styles  # no styles file: the demo's


def test_a_bad_wildcards_folder_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("a: [unclosed\n")
    with pytest.raises(PromptLibraryError, match=r"broken\.yaml"):
        read_wildcards(tmp_path)
    with pytest.raises(PromptLibraryError, match="not a folder"):
        read_wildcards(tmp_path / "nope")
