"""A batch of cells one pipeline call renders, and the receipt its images carry."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from PIL import Image

from models.domain.cells import RenderParams
from models.domain.infotext import Receipt
from worker.hires import HiresParams, hires_size

# Where a rendered image carries its ``Receipt`` (PIL's per-image metadata) to the writer.
RECEIPT_KEY = "farm_receipt"


def receipt_of(image: Image.Image) -> Receipt | None:
    """What the renderer recorded about how it made ``image`` (None: nothing)."""
    receipt = image.info.get(RECEIPT_KEY)
    return receipt if isinstance(receipt, Receipt) else None


@dataclass(frozen=True)
class RenderBatch:
    """Cells that share every render field but those that vary in a shard (prompt, seed:
    ``models.domain.cells.SHARED_FIELDS``): one pipeline call renders them all."""

    cells: tuple[RenderParams, ...]
    # A refinement's base images, one per cell (its parent's PNG, worker/refine_base.py):
    # only the hi-res pass is run on them. None: the base pass is rendered.
    bases: tuple[Image.Image, ...] | None = None

    @classmethod
    def of(
        cls,
        *,
        prompts: list[str],
        seeds: list[int],
        negative_prompts: list[str] | None = None,
        **shared: Any,
    ) -> RenderBatch:
        """A batch from its prompts and seeds and the fields they share (warm-up,
        benchmarks and tests build batches this way; workers from stored cells)."""
        negatives = negative_prompts or [""] * len(prompts)
        return cls(
            tuple(
                RenderParams(prompt=p, negative_prompt=n, seed=s, **shared)
                for p, n, s in zip(prompts, negatives, seeds, strict=True)
            )
        )

    def with_fields(self, **changes: Any) -> RenderBatch:
        """The same cells with ``changes`` to shared fields (a sampler, the hi-res pass)."""
        return RenderBatch(tuple(replace(c, **changes) for c in self.cells), self.bases)

    def subset(self, indices: list[int]) -> RenderBatch:
        bases = self.bases
        return RenderBatch(
            tuple(self.cells[i] for i in indices),
            None if bases is None else tuple(bases[i] for i in indices),
        )

    @property
    def first(self) -> RenderParams:
        """The fields every cell of the batch shares are read from its first cell."""
        return self.cells[0]

    @property
    def prompts(self) -> list[str]:
        return [c.prompt for c in self.cells]

    @property
    def negative_prompts(self) -> list[str]:
        return [c.negative_prompt for c in self.cells]

    @property
    def seeds(self) -> list[int]:
        return [c.seed for c in self.cells]

    @property
    def hires(self) -> HiresParams | None:
        first = self.first
        if first.hires_scale is None or first.hires_strength is None:
            return None
        return HiresParams(first.hires_scale, first.hires_strength, first.hires_steps)

    @property
    def output_size(self) -> tuple[int, int]:
        hires, first = self.hires, self.first
        if hires is None:
            return first.width, first.height
        return hires_size(first.width, first.height, hires.scale)


def split_batch(batch: RenderBatch, lo: int, hi: int) -> RenderBatch:
    return batch.subset(list(range(lo, hi)))


def select_cells(batch: RenderBatch, indices: list[int]) -> RenderBatch:
    return batch.subset(indices)
