#!/usr/bin/env bash
# Runs the whole test suite as CI does: every package with the race
# detector, including the fuzzers' seed corpora and the megaflow property
# test with its fixed seed. Run it as root: the end-to-end tests build
# network namespaces (without root they skip, saying why).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
# -p 2: this machine has two cores; more test binaries at once only thrash.
exec go test -race -count=1 -p 2 -timeout 40m ./...
