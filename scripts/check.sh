#!/bin/sh
# npm test's checks before the tests (package.json "pretest"): the build, then the type check of
# the tests and ESLint side by side. Both are single-threaded and take most of a core for tens of
# seconds; on a 2-core machine, one after the other would add the shorter one's time to every run.
# The build is incremental (dist/.tsbuildinfo): after `npm ci`, which builds, it only checks.
set -eu
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
npx tsc -p test/tsconfig.json &
types=$!
status=0
npx eslint . || status=$?
wait "$types" || status=$?
exit "$status"
