"""A new grid axis touches a handful of files: proven by adding one and following it.

On a copy of the source tree, a throwaway setting axis (``flavor``) is added in only
these places: its render field with its infotext key (models/domain/cells.py), its spec
field (models/domain/spec.py), its items column (models/db/tables.py) and a new
migration. A pipeline that used it would add the renderer: five files and a migration.

Then, in a subprocess running that copy on a fresh Postgres database: a job with
``flavor: ["plain", "spicy"]`` goes through the real submit path (dry run, COPY of its
cells), an embedded worker renders it (the simulated renderer), and the spicy cell's
PNG says ``Flavor: spicy`` in its infotext; the images API and the manifest show the
field too. Nothing else of the farm was told about it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from alembic.script import ScriptDirectory

from migrations.apply import alembic_config
from tests.services import ROOT, postgres_database

PACKAGES = ("api", "beat", "farm", "migrations", "models", "worker")

# (file, the line after which the text goes, the text): the whole change.
EDITS = [
    (
        "models/domain/cells.py",
        '    hires_steps: int | None = render_field(None, infotext="Hires steps", read=int)\n',
        '    flavor: str = render_field("plain", infotext="Flavor")\n',
    ),
    (
        "models/domain/spec.py",
        "from __future__ import annotations\n",
        "from pydantic import Discriminator, Tag\n",
    ),
    (
        "models/domain/spec.py",
        "    guidance_scale: GuidanceAxis = DEFAULT_GUIDANCE_SCALE\n",
        textwrap.indent(
            textwrap.dedent(
                """\
                flavor: Annotated[
                    Annotated[StrictStr, Tag("Value")]
                    | Annotated[list[StrictStr], Field(min_length=1), Tag("List")],
                    Discriminator(lambda v: "List" if isinstance(v, list) else "Value"),
                    GRID_AXIS,
                ] = "plain"
                """
            ),
            "    ",
        ),
    ),
    (
        "models/db/tables.py",
        "    hires_steps: Mapped[int | None] = mapped_column(Integer, default=None)\n",
        "    flavor: Mapped[str | None] = mapped_column(String(32), default=None)\n",
    ),
]

MIGRATION = """
from alembic import op
import sqlalchemy as sa

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("flavor", sa.String(32), nullable=True))
"""

SCRIPT = r"""
import json, sys, time, uuid
from pathlib import Path
from fastapi.testclient import TestClient
from PIL import Image

import models
from farm.stack import build_app
from migrations.apply import upgrade
from models.db.keys import create_api_key
from models.db.session import make_engine, make_session_factory
from models.domain.infotext import parse_infotext
from models.infra.settings import Settings

data = Path(sys.argv[2])
settings = Settings(
    data_dir=data, database_url=sys.argv[1], broker_url="", model="sim",
    models={"sim": "simulated:0"}, reconcile_interval_s=0.2,
)
upgrade(settings.sqlalchemy_url)
with make_session_factory(make_engine(settings.sqlalchemy_url)).begin() as session:
    key = create_api_key(session, tenant_name="axis")
auth = {"Authorization": f"Bearer {key}"}
body = {"prompts": ["1girl"], "seeds": [7], "flavor": ["plain", "spicy"]}
app, runtime = build_app(settings)
runtime.start()
try:
    with TestClient(app) as client:
        dry = client.post("/v1/jobs?dry_run=true", json=body, headers=auth).json()
        job = client.post("/v1/jobs", json=body, headers=auth).json()
        for _ in range(600):
            view = client.get(f"/v1/jobs/{job['id']}", headers=auth).json()
            manifest = client.get(view["links"]["manifest"], headers=auth)
            if view["status"] == "succeeded" and manifest.status_code == 200:
                break
            time.sleep(0.1)
        images = client.get(f"/v1/jobs/{job['id']}/images", headers=auth).json()["items"]
        pngs = [
            parse_infotext(Image.open(settings.local_storage_dir / i["key"]).info["parameters"])
            for i in images
        ]
        print(json.dumps({
            "models_from": models.__file__,
            "axes": dry["axes"],
            "status": view["status"],
            "api": [i["flavor"] for i in images],
            "infotext": [p.flavor for p in pngs],
            "manifest": [c["flavor"] for c in manifest.json()["cells"]],
            "fields": [name for name, _ in manifest.json()["cell_fields"]],
        }))
finally:
    runtime.stop()
"""


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def test_a_new_axis_flows_from_the_spec_to_the_png(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    for file, anchor, text in EDITS:
        source = (tree / file).read_text()
        assert source.count(anchor) == 1, f"{file}: the anchor line moved; update this test"
        (tree / file).write_text(source.replace(anchor, anchor + text))
    (tree / "migrations/versions/9999_flavor.py").write_text(MIGRATION.format(head=_head()))

    with postgres_database() as url:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        env = {k: v for k, v in env.items() if not k.startswith("FARM_")}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, url, str(tmp_path / "data")],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["models_from"].startswith(str(tree))  # the copy ran, not this tree
    assert result["axes"]["flavor"] == 2  # the dry run counts the new axis
    assert result["status"] == "succeeded"
    assert result["api"] == ["plain", "spicy"]
    assert result["infotext"] == ["plain", "spicy"]  # the default is read back as such
    assert result["manifest"] == ["plain", "spicy"]
    assert "flavor" in result["fields"]  # the gallery's parameter table lists it
