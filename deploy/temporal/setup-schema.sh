#!/bin/sh
# One-shot (temporalio/admin-tools): bring Temporal's databases to the schema this server version expects.
# Safe to re-run on every `up`: setup-schema on an already versioned database changes nothing, and
# update-schema applies only the versions newer than the stored one. The databases themselves are created
# by deploy/postgres/create-temporal-databases.sh.
set -eu
: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
SCHEMA_DIR=/etc/temporal/schema/postgresql/v12

sql_tool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "${DB_PORT:-5432}" -u "$POSTGRES_USER" "$@"
}

for database in temporal temporal_visibility; do
  schema=$([ "$database" = temporal ] && echo temporal || echo visibility)
  echo "temporal-schema: $database"
  sql_tool --db "$database" setup-schema -v 0.0
  sql_tool --db "$database" update-schema -d "$SCHEMA_DIR/$schema/versioned"
done
echo "temporal-schema: done"
