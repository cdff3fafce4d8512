#!/usr/bin/env bash
# `npm run test:no-toolchain`: proves that a newcomer's two commands work on a machine without cmake,
# a C/C++ compiler, make or Python. A fresh clone of the committed tree, in a folder only its owner may
# enter (as .ci/run), runs `npm ci` with those tools hidden from PATH, then `npm run demo`; the runtime
# client aws-lambda-ric (an optional dependency that builds from source) must be left out, and the
# artifact suite must say in one line that it is skipped and why. Prints how long `npm ci` took.
#
# `npm run test:no-toolchain -- --with-toolchain` times `npm ci` in a fresh clone with the full PATH
# instead, and checks that the runtime client was built.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

mode=without
case "${1:-}" in
  '') ;;
  --with-toolchain) mode=with ;;
  *) echo "usage: npm run test:no-toolchain [-- --with-toolchain]" >&2; exit 2 ;;
esac

fail() { echo "no-toolchain: FAILED: $*" >&2; exit 1; }

# A newcomer's shell: none of the npm_* variables `npm run` sets for this checkout (npm_config_local_prefix
# would point the clone's npm back here), none of this checkout's node_modules/.bin on PATH (the clone
# starts from the system's Node and npm, and gets Node 24 from its own devDependency).
for v in $(compgen -e); do
  case "$v" in npm_* | INIT_CWD | NODE | PYTHON | LAKETS_REQUIRE_RUNTIME_CLIENT) unset "$v" ;; esac
done
IFS=: read -r -a dirs <<<"$PATH"
path=()
for d in "${dirs[@]}"; do
  case "$d" in '' | */node_modules/*) ;; *) path+=("$d") ;; esac
done

outer="$(mktemp -d "${HOME:-/root}/lakets-no-toolchain-XXXXXX")"
trap 'rm -rf "$outer"' EXIT
chmod 700 "$outer"

if [ "$mode" = without ]; then
  # PATH is one folder of links to every command on PATH except the toolchain aws-lambda-ric's
  # install uses (cmake, a C/C++ compiler, make, python for node-gyp).
  bin="$outer/bin"
  mkdir "$bin"
  for d in "${path[@]}"; do
    [ -d "$d" ] || continue
    for f in "$d"/*; do
      name="${f##*/}"
      [ -f "$f" ] && [ -x "$f" ] && [ ! -e "$bin/$name" ] || continue
      case "$name" in
        cmake* | ccmake* | ctest* | cpack* | make | gmake | make-* | cc | c89* | c99* | c++ | c++-* | *-c++ | \
          gcc | gcc-* | *-gcc | *-gcc-* | g++ | g++-* | *-g++ | *-g++-* | cpp | cpp-* | *-cpp | *-cpp-* | \
          clang* | python*) ;;
        *) ln -s "$f" "$bin/$name" ;;
      esac
    done
  done
  export PATH="$bin"
  for tool in cmake g++ gcc c++ cc make python3 python; do
    if command -v "$tool" >/dev/null 2>&1; then fail "$tool is still on PATH"; fi
  done
  echo "no-toolchain: cmake, g++, gcc, c++, cc, make, python3 and python hidden from PATH"
else
  PATH="$(IFS=:; echo "${path[*]}")"
  export PATH
  for tool in cmake g++ make python3; do
    command -v "$tool" >/dev/null 2>&1 || fail "--with-toolchain needs $tool on PATH"
  done
fi

git clone --quiet "$repo" "$outer/lakets"
cd "$outer/lakets"
echo "no-toolchain: fresh clone of $(git rev-parse --short HEAD) in $outer/lakets ($(stat -c %a "$outer"))"

started=$(date +%s)
npm ci --no-audit --no-fund
seconds=$(($(date +%s) - started))

if [ "$mode" = with ]; then
  [ -f node_modules/aws-lambda-ric/rapid-client.node ] ||
    fail "npm ci with the toolchain did not build aws-lambda-ric (run npm ci --foreground-scripts to see its build)"
  echo "no-toolchain: npm ci with the toolchain took ${seconds} s, aws-lambda-ric built"
  exit 0
fi

[ ! -e node_modules/aws-lambda-ric ] ||
  fail "aws-lambda-ric is in node_modules although the toolchain was hidden: this run proves nothing"
echo "no-toolchain: npm ci took ${seconds} s and left out aws-lambda-ric"

npm run demo || fail "npm run demo failed"

out="$outer/artifact.log"
npm test -- test/artifact 2>&1 | tee "$out" || fail "npm test -- test/artifact failed"
line="$(grep -o 'test/artifact skipped: .*' "$out" | head -n 1)" ||
  fail "npm test -- test/artifact did not say why the artifact suite was skipped"

echo
echo "no-toolchain: passed without cmake, a C/C++ compiler, make or python:"
echo "  npm ci: ${seconds} s, aws-lambda-ric left out"
echo "  npm run demo: passed"
echo "  npm test -- test/artifact: ${line}"
