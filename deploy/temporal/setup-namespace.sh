#!/bin/sh
# One-shot (temporalio/admin-tools): create the Tradeflow namespace if it does not exist yet.
# Tradeflow's search attributes are registered by the api at start (`python -m workflows.search_attributes`),
# from the one list in workflows/search_attributes.py, so their names are never spelled twice.
set -eu
: "${TEMPORAL_ADDRESS:?}" "${TEMPORAL_NAMESPACE:?}"

attempt=1
until temporal operator cluster health --address "$TEMPORAL_ADDRESS"; do
  if [ "$attempt" -ge 30 ]; then
    echo "temporal-namespace: the server at $TEMPORAL_ADDRESS is not healthy after $attempt attempts" >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep 2
done

if temporal operator namespace describe --address "$TEMPORAL_ADDRESS" --namespace "$TEMPORAL_NAMESPACE" >/dev/null 2>&1; then
  echo "temporal-namespace: $TEMPORAL_NAMESPACE exists"
else
  temporal operator namespace create --address "$TEMPORAL_ADDRESS" --namespace "$TEMPORAL_NAMESPACE" \
    --retention "${TEMPORAL_RETENTION:-30d}"
  echo "temporal-namespace: created $TEMPORAL_NAMESPACE (retention ${TEMPORAL_RETENTION:-30d})"
fi
