#!/bin/sh
# Runs every compiled test (*.test.js under a project's dist) with node's test runner.
set -e
cd "$(dirname "$0")/.."
files=$(find proto libs apps tools e2e -path '*/node_modules' -prune -o -path '*/dist/*' -name '*.test.js' -print | sort)
[ -n "$files" ] || { echo "run-tests: no test files found" >&2; exit 1; }
# One file at a time: the tests share one Docker engine and the cgroup tree.
exec node --test --test-concurrency=1 --test-reporter=spec $files
