"""Where held images are kept: outside their job's folder, so nothing that serves or
copies the folder (the gallery's relative links, ``/web/jobs/{id}/files/...``, a bucket
sync of the job) can reach them.

``{prefix}/{tenant}/held/{job}/{image name}``: the tenant's folder still holds everything
of the tenant (deleting a tenant deletes one prefix), and ``held`` is never a job id.
An operator's release moves the image to its ordinary key (``image_key``).
"""

from __future__ import annotations

import uuid

from models.infra.storage import job_folder


def tenant_folder(*, prefix: str, tenant_id: uuid.UUID) -> str:
    return f"{prefix}/{tenant_id}".lstrip("/")


def held_folder(*, prefix: str, tenant_id: uuid.UUID, job_id: uuid.UUID) -> str:
    return f"{tenant_folder(prefix=prefix, tenant_id=tenant_id)}/held/{job_id}"


def held_key(image_key: str, *, prefix: str, tenant_id: uuid.UUID, job_id: uuid.UUID) -> str:
    """The private twin of a cell's ordinary key."""
    name = image_key.rsplit("/", 1)[-1]
    return f"{held_folder(prefix=prefix, tenant_id=tenant_id, job_id=job_id)}/{name}"


def released_key(held: str, *, prefix: str, tenant_id: uuid.UUID, job_id: uuid.UUID) -> str:
    """The ordinary key a held image moves to when it is released."""
    name = held.rsplit("/", 1)[-1]
    return f"{job_folder(prefix=prefix, tenant_id=tenant_id, job_id=job_id)}/{name}"
