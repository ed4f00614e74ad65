#!/bin/sh
# npm test (package.json "test"; "pretest" builds dist/ first, incrementally: after `npm ci`, which
# builds, it only checks). The tests' type check runs beside the tests rather than before them: it
# is single-threaded and takes most of a core for several seconds, which the tests, often waiting
# on sockets and timers, leave free. ESLint is `npm run lint` (its type-aware rules cost some 35 s
# of CPU, which on 2 cores took npm test past 4 minutes); .ci/run runs it too. Arguments go to
# tap. Fails if either fails.
set -u
cd "$(dirname "$0")/.."
# Node's compile cache (22.1+): every test file starts a Node process, and many start servers
# and tools too (which inherit it), each compiling the same tap, AWS SDK and dist/ modules;
# from the cache a start takes about a quarter less CPU. Keyed by content, so never stale.
export NODE_COMPILE_CACHE="${NODE_COMPILE_CACHE:-$(pwd)/node_modules/.cache/node-compile-cache}"
npx tsc -p test/tsconfig.json &
types=$!
status=0
TAP_TYPE_STRIP_ONLY=1 npx tap "$@" || status=$?
wait "$types" || { echo "npm test: the type check of the tests failed (above)" >&2; status=1; }
exit "$status"
