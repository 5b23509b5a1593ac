#!/bin/bash
# The test command of the README and of CI: installs what it needs, builds
# Dossier twice (release, and with AddressSanitizer and
# UndefinedBehaviorSanitizer) and runs every test of both builds with CTest.
#
#   tools/test.sh              both builds, all tests
#   tools/test.sh -L unit      pass ctest arguments through (both builds)
set -euo pipefail
cd "$(dirname "$0")/.."

tools/deps.sh
jobs=$(nproc)

for variant in release sanitize; do
    dir=build/$variant
    flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
    [ "$variant" = sanitize ] && flags+=(-DDOSSIER_SANITIZE=ON)
    echo "=== $variant build ($dir)"
    cmake -S . -B "$dir" "${flags[@]}" >/dev/null
    cmake --build "$dir" -j"$jobs"
    echo "=== $variant tests"
    (cd "$dir" && ctest --output-on-failure -j"$jobs" "$@")
done
echo "=== all tests passed in both builds"
