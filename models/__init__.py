"""SQLModel tables and the query functions over them. Importing this package registers every table."""

# Imported for their side effect: each module registers its tables.
from models import approvals, ledger, masterdata, purchasing, records, sales, stock, users  # noqa: F401
