#!/bin/sh
# npm test (package.json "test"; "pretest" builds dist/ first, incrementally: after `npm ci`, which
# builds, it only checks). The tests' type check runs beside the tests rather than before them: it
# is single-threaded and takes most of a core for several seconds, which the tests, often waiting
# on sockets and timers, leave free. ESLint is `npm run lint` (its type-aware rules cost some 35 s
# of CPU, which on 2 cores took npm test past 4 minutes); .ci/run runs it too. Arguments go to
# tap. Fails if either fails.
set -u
cd "$(dirname "$0")/.."
npx tsc -p test/tsconfig.json &
types=$!
status=0
TAP_TYPE_STRIP_ONLY=1 npx tap "$@" || status=$?
wait "$types" || { echo "npm test: the type check of the tests failed (above)" >&2; status=1; }
exit "$status"
