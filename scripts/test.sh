#!/bin/sh
# npm test (package.json "test"; "pretest" builds dist/ first, incrementally: after `npm ci`, which
# builds, it only checks). The tests' type check and ESLint run beside the tests rather than
# before them: each is single-threaded and takes most of a core for tens of seconds, which the
# tests, often waiting on sockets and timers, leave free; run first, they added their time to
# every run. Arguments go to tap. Fails if any of the three fails.
set -u
cd "$(dirname "$0")/.."
npx tsc -p test/tsconfig.json &
types=$!
npx eslint . &
lint=$!
status=0
TAP_TYPE_STRIP_ONLY=1 npx tap "$@" || status=$?
wait "$types" || { echo "npm test: the type check of the tests failed (above)" >&2; status=1; }
wait "$lint" || { echo "npm test: ESLint failed (above)" >&2; status=1; }
exit "$status"
