"""Item resources: ``GET /v1/items/{item}`` and ``PUT /v1/items`` (catalogue changes apply at once)."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import pyarrow as pa
from fastapi import APIRouter, Path

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
    return ItemOut(**info.as_dict())


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
        row = it.model_dump()
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
    frame = table_to_frame("items", checked.table)
    with services.store.open() as store:
        inserted, updated, unchanged = store.upsert("items", checked.table, source="api")
        services.catalogue.upsert_frame(frame)
        services.state.upsert_items(frame[["id", "category"]])
        if services.text is not None:
            services.text.upsert_items(frame)
        services.catalogue_changed()
    log.info("items put rows=%d inserted=%d updated=%d", len(rows), inserted, updated)
    return UpsertOut(inserted=inserted, updated=updated, unchanged=unchanged)
