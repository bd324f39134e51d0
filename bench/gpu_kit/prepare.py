"""Prepare what travels to the GPU machine: wheels of every package the kit needs there
and the machine lacks, for its Python 3.12 (manylinux x86_64), in .gpu-kit/wheels
(git ignores it; the device call carries it).

1. pip resolves the kit's requirements for that platform beside the machine's own
   pinned packages (torch 2.11, transformers 5.17, huggingface_hub 1.33, numpy 2.5...)
   and, for the rest, the versions this project's environment has (tested here),
   without installing anything (``--dry-run --report``);
2. what the machine already has (machine_packages.txt) is left out, the rest is
   downloaded, one version each;
3. every carried wheel's Requires-Dist is checked to be carried or on the machine, and
   the total that travels (working tree + wheels) is measured against the 64 MiB limit;
4. the kit is imported here as it will be there (bench/gpu_kit/import_check.py).

    python -m bench.gpu_kit.prepare            # or: make gpu-kit
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bench.gpu_kit.import_check import carried_distributions, check_imports

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / ".gpu-kit"
LIMIT_MIB = 64
PLATFORM = [
    "--only-binary=:all:",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
    "--abi",
    "cp312",
    "--abi",
    "abi3",
    "--abi",
    "none",
    *(f"--platform=manylinux_2_{n}_x86_64" for n in range(17, 40)),  # pip matches N exactly
    "--platform=manylinux2014_x86_64",
    "--platform=manylinux1_x86_64",
    "--platform=linux_x86_64",
    "--platform=any",
]
# What the kit imports on its embedded path (pyproject.toml's pins where it has them);
# boto3 stays behind: local storage does not import it. torchao is the optional FP8.
REQUIREMENTS = [
    "diffusers==0.42.1",
    "sqlalchemy>=2.0,<3",
    "alembic>=1.13",
    "pydantic>=2.7,<3",
    "pydantic-settings>=2.3",
    "fastapi>=0.115",
    "uvicorn>=0.30",
    "celery[redis]>=5.5,<6",
    "redis>=5",
    "psycopg[binary]>=3.2",
    "psycopg-pool>=3.2",
    "croniter>=7,<8",
    "cryptography>=42",  # api/deps imports models.infra.encryption (Fernet) at start
    "torchao==0.18.0",  # FP8; its version table pairs 0.18 with torch >= 2.11
]


def machine_packages() -> dict[str, str | None]:
    """The GPU machine's packages: canonical name -> version where it is known."""
    packages: dict[str, str | None] = {}
    for line in (Path(__file__).with_name("machine_packages.txt")).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.strip().partition("==")
            packages[canonicalize_name(name)] = version or None
    return packages


def resolve(machine: dict[str, str | None]) -> dict[str, str]:
    """Every distribution the requirements need there, by pip's own resolver."""
    pins = [f"{name}=={version}" for name, version in machine.items() if version]
    # Elsewhere the versions this project is tested with (its own environment's).
    pins += [
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in importlib.metadata.distributions()
        if canonicalize_name(dist.metadata["Name"]) not in machine
    ]
    with tempfile.TemporaryDirectory() as tmp:
        report, constraints = Path(tmp) / "report.json", Path(tmp) / "machine.txt"
        constraints.write_text("\n".join(pins) + "\n")  # its versions, not installs
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        command += ["--quiet", "--report", str(report), "--target", tmp, *PLATFORM]
        subprocess.run([*command, "-c", str(constraints), *REQUIREMENTS], check=True)
        installs = json.loads(report.read_text())["install"]
    return {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in installs
    }


def download(carried: dict[str, str], wheels: Path) -> None:
    wheels.mkdir(parents=True, exist_ok=True)
    for old in wheels.glob("*.whl"):  # one version of each: two stop the install there
        old.unlink()
    specs = [f"{name}=={version}" for name, version in sorted(carried.items())]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *PLATFORM]
    subprocess.run([*command, "-d", str(wheels), *specs], check=True)


def unmet_requirements(wheels: Path, machine: dict[str, str | None]) -> list[str]:
    """Requires-Dist of each carried wheel (for Python 3.12 on Linux, no extras) that
    is neither carried nor on the machine."""
    environment: dict[str, str] = {str(k): str(v) for k, v in default_environment().items()}
    environment.update(python_version="3.12", python_full_version="3.12.3", extra="")
    environment.update(sys_platform="linux", platform_machine="x86_64")
    carried = {canonicalize_name(w.name.split("-")[0]) for w in wheels.glob("*.whl")}
    unmet = []
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            metadata = Parser().parsestr(archive.read(name).decode())
        for line in metadata.get_all("Requires-Dist") or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            needed = canonicalize_name(requirement.name)
            if needed not in carried and needed not in machine:
                unmet.append(f"{wheel.name} needs {requirement}")
    return unmet


def travelling_mib(wheels: Path) -> tuple[float, float]:
    """The working tree that travels (tracked + untracked, not ignored) and the wheels."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = [ROOT / name.decode() for name in listed if name]
    tree = sum(f.stat().st_size for f in files if f.is_file())
    carried = sum(w.stat().st_size for w in wheels.glob("*.whl"))
    return tree / 2**20, carried / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, default=KIT / "wheels")
    args = parser.parse_args(argv)
    machine = machine_packages()
    needed = resolve(machine)
    carried = {name: version for name, version in needed.items() if name not in machine}
    download(carried, args.wheels)
    unmet = unmet_requirements(args.wheels, machine)
    tree, wheels = travelling_mib(args.wheels)
    for name, version in sorted(carried.items()):
        print(f"  carry {name}=={version}")
    print(f"{len(carried)} wheels in {args.wheels}: {wheels:.1f} MiB")
    print(f"working tree {tree:.1f} MiB + wheels {wheels:.1f} MiB = {tree + wheels:.1f} MiB")
    print(f"of the {LIMIT_MIB} MiB a device call carries")
    for line in unmet:
        print(f"unmet: {line}")
    imports, detail = check_imports(set(machine), carried_distributions(args.wheels))
    print(f"imports as on the machine: {'yes' if imports else 'NO'} ({detail})")
    return 1 if unmet or not imports or tree + wheels > LIMIT_MIB else 0


if __name__ == "__main__":
    sys.exit(main())
