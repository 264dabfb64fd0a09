#!/bin/bash
# tests/integration/include_graph.sh: the module include graph (scripts/include_graph.py) has no
# cycle and follows DESIGN.md §6's layering (cli -> engine -> store, kernels -> common).
command -v python3 >/dev/null || { echo "skipping: python3 missing"; exit 77; }
python3 "$AQS_SOURCE_DIR/scripts/include_graph.py" "$AQS_SOURCE_DIR"
