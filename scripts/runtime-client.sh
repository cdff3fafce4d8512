#!/usr/bin/env bash
# `npm run runtime-client`: installs aws-lambda-ric, AWS's Lambda runtime interface client, which the
# artifact suite (test/artifact) and the bench's runtime section run the built functions under.
# It is an optional dependency because its install builds curl and a native addon from source. `npm ci`
# leaves it out, without a word, where that build fails (no cmake, C++ compiler, make or python3) and
# also where the Node that runs npm is older than the client's `engines` (>=22, e.g. a system Node 20):
# this script runs npm on the project's Node 24 and says plainly when the build cannot happen.
set -euo pipefail
cd "$(dirname "$0")/.."

ric=node_modules/aws-lambda-ric
if [ -f "$ric/rapid-client.node" ]; then
  echo "runtime-client: aws-lambda-ric is installed"
  exit 0
fi
if [ "$(uname)" = Darwin ]; then
  echo "runtime-client: aws-lambda-ric builds on Linux only (Lambda's OS); the artifact suite runs on Linux" >&2
  exit 1
fi

missing=()
command -v cmake >/dev/null 2>&1 || command -v cmake3 >/dev/null 2>&1 || missing+=(cmake)
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "runtime-client: aws-lambda-ric builds from source and PATH lacks ${missing[*]} (Debian: apt-get install cmake g++ make python3)" >&2
  exit 1
fi

# The project's Node 24 (the `node` devDependency) runs npm, so that npm does not set the client aside
# for its engines. --no-save: the lockfile already pins it.
PATH="$PWD/node_modules/.bin:$PATH"
case "$(node --version 2>/dev/null)" in
  v2[2-9].* | v[3-9][0-9].*) ;;
  *)
    echo "runtime-client: node_modules has no Node 24; run npm ci first" >&2
    exit 1
    ;;
esac
npm install --no-save --no-audit --no-fund --foreground-scripts
if [ ! -f "$ric/rapid-client.node" ]; then
  echo "runtime-client: the build of aws-lambda-ric failed (its output is above)" >&2
  exit 1
fi
echo "runtime-client: aws-lambda-ric is installed"
