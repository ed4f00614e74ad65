#!/bin/sh
# npm test (package.json "test"; "pretest" builds dist/ first, incrementally: after `npm ci`, which
# builds, it only checks). The static checks, the tests' type check and ESLint, are `npm run lint`
# (some 60 s of CPU together, with aws-cdk-lib's types: on 2 cores they took npm test past 4
# minutes); .ci/run runs it before npm test. Arguments go to tap.
set -u
cd "$(dirname "$0")/.."
# Node's compile cache (22.1+): every test file starts a Node process, and many start servers
# and tools too (which inherit it), each compiling the same tap, AWS SDK and dist/ modules;
# from the cache a start takes about a quarter less CPU. Keyed by content, so never stale.
export NODE_COMPILE_CACHE="${NODE_COMPILE_CACHE:-$(pwd)/node_modules/.cache/node-compile-cache}"
exec env TAP_TYPE_STRIP_ONLY=1 npx tap "$@"
