#!/bin/sh
# bench/tokenizer/run.sh: BPE encode throughput, baton's C tokenizer vs the
# `tokenizers` package, side by side (bench_tokenizer.py says what each
# column measures).
#   BUILD=build PY=/work/pyenv/bin/python3 MB=8 RUNS=5 sh bench/tokenizer/run.sh
set -eu
BUILD=${BUILD:-build}
PY=${PY:-python3}
cmake --build "$BUILD" -j2 --target data_tok_tool >/dev/null
exec "$PY" "$(dirname "$0")/bench_tokenizer.py" "$BUILD/tests/data/data_tok_tool" \
  "$(cd "$(dirname "$0")/../.." && pwd)" --mb "${MB:-8}" --runs "${RUNS:-5}" \
  --vocab "${VOCAB:-8000}"
