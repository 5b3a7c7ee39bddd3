"""SQLModel tables and the query functions over them. Importing this package registers every table."""

from models import approvals, ledger, masterdata, records, sales, stock, users  # noqa: F401  (registers the tables)
