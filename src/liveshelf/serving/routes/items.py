"""Item resources: ``GET /v1/items/{item}`` and ``PUT /v1/items`` (catalogue changes apply at once).

An item may arrive with ``embeddings`` (its vectors by modality: cover image, video, audio ...): they are
checked with the rows, before anything is written, and stored with the item in one transaction."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import numpy as np
import pyarrow as pa
from fastapi import APIRouter, Path

from liveshelf.data.item_vectors import ItemVectors, check_dim, check_modality, check_vectors
from liveshelf.data.validate import Rules, table_to_frame, validate
from liveshelf.errors import NotFoundError, ValidationError
from liveshelf.serving.access import IngestAccess, ReadAccess
from liveshelf.serving.deps import ServicesDep
from liveshelf.serving.schemas import (
    BODY,
    ID_DOC,
    READ,
    WRITE,
    ItemOut,
    ItemsIn,
    Printable,
    UpsertOut,
    responses,
)

router = APIRouter(prefix="/v1/items", tags=["items"])
log = logging.getLogger("liveshelf.serving")


@router.get("/{item}", response_model=ItemOut, summary="One catalogue item", responses=responses(*READ, 404))
def get_item(
    item: Annotated[str, Path(min_length=1, max_length=256, json_schema_extra=ID_DOC), Printable],
    services: ServicesDep,
    _client: ReadAccess,
) -> ItemOut:
    services.sync_catalogue()
    info = services.catalogue.get(item)
    if info is None:
        raise NotFoundError(f"Unknown item {item!r}: it is not in the catalogue. Add it with PUT /v1/items.")
    with services.store.open() as store:
        modalities = store.item_modalities(item)
    return ItemOut(**info.as_dict(), modalities=modalities)


@router.put(
    "",
    response_model=UpsertOut,
    summary="Insert or replace catalogue items",
    responses=responses(*WRITE, *BODY),
)
@router.put("/", response_model=UpsertOut, include_in_schema=False)
def put_items(body: ItemsIn, services: ServicesDep, _client: IngestAccess) -> UpsertOut:
    """All or nothing: a bad row answers 422 naming it, and nothing is written.
    An ``attributes.stock`` of 0 keeps the item out of recommendations."""
    rows = []
    for it in body.items:
        row = it.model_dump(exclude={"embeddings", "modalities"})
        row["attributes"] = (
            None if it.attributes is None else json.dumps(it.attributes, ensure_ascii=False, default=str)
        )
        rows.append(row)
    checked = validate("items", pa.Table.from_pylist(rows), Rules())
    if checked.n_rejected:
        first = checked.rejects.iloc[0]
        raise ValidationError(
            f"items row {int(first['row'])}: field '{first['field']}': {first['reason']} "
            f"({checked.n_rejected} bad row(s)). Nothing was written.",
            field=f"items.{first['field']}",
            value=first["value"],
        )
    vectors = _embeddings(body)
    frame = table_to_frame("items", checked.table)
    with services.store.open() as store:
        stored = store.modalities() if vectors else {}
        for name, v in vectors.items():  # the store checks again inside its transaction (rolls back)
            check_dim(name, v.dim, stored.get(name), f"items.embeddings.{name}", item=str(v.ids[0]))
        inserted, updated, unchanged = store.upsert("items", checked.table, source="api", vectors=vectors)
        services.catalogue.upsert_frame(frame)
        services.state.upsert_items(frame[["id", "category"]])
        if services.text is not None:
            services.text.upsert_items(frame)
        services.catalogue_changed()
    log.info(
        "items put rows=%d inserted=%d updated=%d vectors=%d",
        len(rows),
        inserted,
        updated,
        sum(len(v.ids) for v in vectors.values()),
    )
    return UpsertOut(inserted=inserted, updated=updated, unchanged=unchanged)


def _embeddings(body: ItemsIn) -> dict[str, ItemVectors]:
    """The request's vectors by modality, checked (name, one dimension per modality, finite, bounded)."""
    grouped: dict[str, tuple[list[str], list[list[float]]]] = {}
    for it in body.items:
        for name, vector in (it.embeddings or {}).items():
            try:
                check_modality(name, "items.embeddings")
            except ValidationError as exc:
                raise ValidationError(f"Item {it.id!r}: {exc}", field=exc.field, value=name) from exc
            ids, vecs = grouped.setdefault(name, ([], []))
            if vecs and len(vector) != len(vecs[0]):
                raise ValidationError(
                    f"The {name!r} vector of item {it.id!r} has {len(vector)} entries, the {name!r} vector of "
                    f"item {ids[0]!r} {len(vecs[0])}: a modality has one dimension. Nothing was written.",
                    field=f"items.embeddings.{name}",
                    value=it.id,
                )
            ids.append(it.id)
            vecs.append(vector)
    out = {}
    for name, (ids, vecs) in grouped.items():
        matrix = np.asarray(vecs, dtype=np.float64).reshape(len(vecs), -1 if vecs[0] else 0)
        out[name] = check_vectors(name, ids, matrix, field=f"items.embeddings.{name}")
    return out
