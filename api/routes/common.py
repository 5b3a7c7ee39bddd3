"""What every list, read, create and update route shares: paging and whitelisted sorting, text search,
references checked with a 422 that names the field, PATCH validated through the Create model, and audit."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from fastapi import HTTPException, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlmodel import Session, SQLModel

from api.audit import audit
from models.users import User

M = TypeVar("M", bound=SQLModel)

MAX_LIMIT = 200
Offset = Annotated[int, Query(ge=0, description="rows to skip")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"rows per page, at most {MAX_LIMIT}")]
TextQuery = Annotated[str | None, Query(max_length=100, description="text contained in the code or name")]


def sort_literal(*fields: str) -> Any:
    """`Literal["sku", "-sku", "name", "-name", ...]`: an unknown sort field is a 422 that lists the allowed
    values, and OpenAPI shows them as an enum."""
    values = tuple(v for f in fields for v in (f, f"-{f}"))
    return Literal[values]  # type: ignore[valid-type]


def contains(q: str | None, *columns: Any) -> ColumnElement[bool] | None:
    """Case-insensitive "contains" over some columns; LIKE wildcards in the user's text match literally."""
    if not q or not q.strip():
        return None
    escaped = q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return or_(*(c.ilike(f"%{escaped}%", escape="\\") for c in columns))


def page_of(
    session: Session,
    stmt: Select,
    *,
    sort: str,
    columns: Mapping[str, Any],
    tie: Any,
    offset: int,
    limit: int,
    rows: bool = False,
) -> tuple[list[Any], int]:
    """Rows of one page and the total matching `stmt`. `tie` (the primary key) makes the order total, so
    rows never repeat or go missing between pages."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    column = columns[sort.lstrip("-")]
    ordered = stmt.order_by(column.desc() if sort.startswith("-") else column.asc(), tie)
    ordered = ordered.offset(offset).limit(limit)
    # rows=True: whole result rows (for selects of several entities/columns), else the first column.
    return list(session.execute(ordered).all() if rows else session.scalars(ordered)), total


def page(items: Sequence[Any], total: int, offset: int, limit: int) -> dict[str, Any]:
    return {"items": list(items), "total": total, "offset": offset, "limit": limit}


def get_or_404(session: Session, model: type[M], row_id: int, label: str) -> M:
    row = session.get(model, row_id)
    if row is None:
        raise HTTPException(status_code=404, detail=f"{label} {row_id} not found")
    return row


def invalid(field: str | Sequence[str | int], message: str, *, where: str = "body", value: Any = None):
    """A 422 in FastAPI's own format, naming the field."""
    loc = (where, field) if isinstance(field, str) else (where, *field)
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": message, "input": value}])


def check_refs(session: Session, refs: Mapping[str, tuple[type[SQLModel], int | None]], *, where: str = "body"):
    """422 listing every reference that points at nothing, e.g. {"category_id": (ProductCategory, 7)}."""
    errors = []
    for field, (model, ref_id) in refs.items():
        if ref_id is not None and session.get(model, ref_id) is None:
            errors.append({
                "type": "value_error",
                "loc": (where, field),
                "msg": f"no {model.__tablename__.replace('_', ' ')} with id {ref_id}",
                "input": ref_id,
            })
    if errors:
        raise RequestValidationError(errors)


def validation_errors(exc: ValidationError, *, where: str = "body") -> RequestValidationError:
    return RequestValidationError([
        {"type": e["type"], "loc": (where, *e["loc"]), "msg": e["msg"], "input": e.get("input")}
        for e in exc.errors(include_url=False, include_context=False)
    ])


def apply_patch(
    row: SQLModel,
    changes: Mapping[str, Any],
    rules: type[BaseModel],
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Apply a PATCH after checking the merged row against the Create model's rules (so a PATCH cannot make
    a row the API would refuse to create, e.g. max below min or a null name) and then `check(merged)` (for
    references); the row is untouched when either refuses. Returns {field: new value} of what changed."""
    merged = {**row.model_dump(), **changes}
    try:
        rules.model_validate(merged)
    except ValidationError as exc:
        raise validation_errors(exc) from None
    if check is not None:
        check(merged)
    changed = {k: v for k, v in changes.items() if getattr(row, k) != v}
    for key, value in changed.items():
        setattr(row, key, value)
    return changed


def record_create(session: Session, user: User, row: SQLModel, data: Mapping[str, Any] | None = None) -> None:
    session.flush()
    audit(session, actor=user.username, action="create", entity_kind=row.__tablename__, entity_id=row.id,
          data=dict(data) if data is not None else row.model_dump(exclude={"id"}))


def record_update(session: Session, user: User, row: SQLModel, changed: Mapping[str, Any]) -> None:
    if changed:
        audit(session, actor=user.username, action="update", entity_kind=row.__tablename__, entity_id=row.id,
              data={"changed": dict(changed)})


def insert_row(session: Session, user: User, row: M, data: Mapping[str, Any] | None = None) -> M:
    """Add a new row, audit its creation and commit: what every create route ends with."""
    session.add(row)
    record_create(session, user, row, data)
    session.commit()
    return row


def patch_row(
    session: Session,
    user: User,
    row: M,
    body: BaseModel,
    rules: type[BaseModel],
    check: Callable[[dict[str, Any]], None] | None = None,
) -> M:
    """Apply a PATCH body through `apply_patch` (the Create model's rules, then `check`), audit what changed
    and commit: what every update route does."""
    changed = apply_patch(row, body.model_dump(exclude_unset=True), rules, check)
    session.add(row)
    record_update(session, user, row, changed)
    session.commit()
    return row
