"""``farm refine JOB``: a child job from cells of a job, over HTTP, like ``farm status``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

from farm.cli_control import EXIT_API_ERROR, call_api
from farm.client import FarmClient

console = Console()
err = Console(stderr=True)
EXIT_FAILED = 1


def parse_cells(text: str | None) -> list[int] | None:
    """``3,7,12`` as indices (``typer.BadParameter`` for anything else)."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give cell indices such as 3,7,12") from None


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``steps=40``, ``sampler=dpmpp_2m``, ``guidance_scale=[4,9]``: a value is JSON where
    it reads as JSON (a number, a list), else the text itself."""
    found: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{pair!r}: give FIELD=VALUE, such as steps=40")
        try:
            found[name.strip()] = json.loads(raw)
        except ValueError:
            found[name.strip()] = raw
    return found


def register(app: typer.Typer, client_of: Callable[[], FarmClient]) -> None:
    """Add ``refine`` to ``farm`` (``client_of`` makes the configured client)."""

    @app.command()
    def refine(
        job_id: str,
        cells: Annotated[str | None, typer.Option(help="Cell indices: 3,7,12.")] = None,
        where: Annotated[
            str | None, typer.Option(help="A cell filter: prompt_index=2&bucket=832x1216.")
        ] = None,
        top: Annotated[int | None, typer.Option(help="The best K cells by score.")] = None,
        per_prompt: Annotated[bool, typer.Option("--per-prompt", help="Top K per prompt.")] = False,
        hires: Annotated[bool, typer.Option("--hires", help="The hi-res pass only.")] = False,
        more_like: Annotated[int | None, typer.Option(help="N new seeds per cell.")] = None,
        set_: Annotated[
            list[str] | None, typer.Option("--set", help="Override a grid field: steps=40.")
        ] = None,
        wait: Annotated[bool, typer.Option("--wait", help="Wait until it is done.")] = False,
    ) -> None:
        """Refine cells of a job into a child job (hi-res, more like them, overrides)."""
        selected = parse_cells(cells)
        overrides = parse_overrides(set_ or [])

        def call(client: FarmClient) -> dict[str, Any]:
            return client.refine(
                job_id,
                cells=selected,
                where=where,
                top=top,
                per_prompt=per_prompt,
                hires=hires or None,
                more_like=more_like,
                overrides=overrides,
            )

        child = call_api(client_of, call)
        console.print(
            f"job {child['id']}: {child['total']} cells, {child['status']} (refines {job_id})",
            soft_wrap=True,
        )
        if wait:
            final = call_api(client_of, lambda c: c.wait(str(child["id"]), poll_s=0.25))
            done = f"{final['done']}/{final['total']}"
            console.print(f"job {final['id']}: {final['status']} ({done} images)", soft_wrap=True)
            if final["status"] != "succeeded":
                raise typer.Exit(EXIT_FAILED)


__all__ = ["EXIT_API_ERROR", "register"]
