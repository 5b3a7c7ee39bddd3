"""SQLModel tables and the query functions over them. Importing this package registers every table."""

from models import approvals, ledger, masterdata, records, stock, users  # noqa: F401  (registers the tables)
