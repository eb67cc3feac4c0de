#!/usr/bin/env bash
# Rebuild the packaged knowledge base from the reference files in ../shared (the exact command used).
set -euo pipefail
cd "$(dirname "$0")/.."
REF=../shared/reference
permed kb build --source "$REF/pharmcat" --release 3.1.1 --built 2026-11-25 \
  --phenotypes "$REF/pharmcat-2024-05/phenotype/cpic" --pypgx "$REF/pypgx" \
  --dpwg-phenotypes "$REF/pharmcat-2024-05/phenotype/dpwg" --guidelines "$REF/pharmcat-2024-05/guidelines" "$@"
