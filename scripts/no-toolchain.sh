#!/usr/bin/env bash
# `npm run test:no-toolchain`: proves that a newcomer's commands work on a machine without cmake, a
# C/C++ compiler, make or python. In a fresh clone of the committed tree, inside a folder only its owner
# may enter (as .ci/run), with those tools hidden from PATH:
#   1. `npm ci` with npm on this machine's Node (a Node 20 sets aws-lambda-ric aside for its engines);
#   2. `npm ci` again with npm on Node 24, as on a slim Node 24 image: npm tries the client's build from
#      source, it fails, and npm must carry on without it;
#   3. `npm run runtime-client` refuses in one line that names what to install;
#   4. `npm run demo` passes, and `npm test -- test/artifact` says in one line that the suite is skipped
#      and why.
# Prints how long each `npm ci` took.
#
# `npm run test:no-toolchain -- --with-toolchain` times the other side in a fresh clone with the full
# PATH: `npm ci` then `npm run runtime-client` (npm on this machine's Node), and `npm ci` with npm on
# Node 24, which builds the client itself.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

mode=without
case "${1:-}" in
  '') ;;
  --with-toolchain) mode=with ;;
  *)
    echo "usage: npm run test:no-toolchain [-- --with-toolchain]" >&2
    exit 2
    ;;
esac

say() { echo "no-toolchain: $*"; }
fail() {
  echo "no-toolchain: FAILED: $*" >&2
  exit 1
}
since() { echo "$(($(date +%s) - $1)) s"; }

# A newcomer's shell: none of the npm_* variables `npm run` set for this checkout (npm_config_local_prefix
# would point the clone's npm back here), none of this checkout's node_modules/.bin on PATH (the clone
# starts from the machine's Node and npm, and gets Node 24 from its own devDependency).
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
  for tool in cmake cmake3 g++ gcc c++ cc make python3 python; do
    if command -v "$tool" >/dev/null 2>&1; then fail "$tool is still on PATH"; fi
  done
  say "cmake, g++, gcc, c++, cc, make, python3 and python hidden from PATH"
else
  PATH="$(
    IFS=:
    echo "${path[*]}"
  )"
  export PATH
  for tool in cmake g++ make python3; do
    command -v "$tool" >/dev/null 2>&1 || fail "--with-toolchain needs $tool on PATH"
  done
fi

git clone --quiet "$repo" "$outer/lakets"
cd "$outer/lakets"
say "fresh clone of $(git rev-parse --short HEAD) in $outer/lakets (folder mode $(stat -c %a "$outer")), npm $(npm --version) on Node $(node --version)"
ric=node_modules/aws-lambda-ric

# 1. npm on the machine's Node.
started=$(date +%s)
npm ci --no-audit --no-fund
ci1=$(since "$started")

# The project's Node 24, copied out of node_modules (which the next `npm ci` removes first).
mkdir "$outer/node24"
cp node_modules/node/bin/node "$outer/node24/node"
node24="$("$outer/node24/node" --version)"

if [ "$mode" = with ]; then
  started=$(date +%s)
  npm run runtime-client
  rc1=$(since "$started")
  [ -f "$ric/rapid-client.node" ] || fail "npm run runtime-client did not install aws-lambda-ric"
  [ -z "$(git status --porcelain)" ] || fail "npm run runtime-client changed the tree: $(git status --porcelain)"
  # Its `npm install` prunes the `node` package's own download; Node 24 must still be there.
  [ "$(node_modules/.bin/node --version)" = "$node24" ] || fail "npm run runtime-client left no Node 24 in node_modules"
  # 2. npm on Node 24: npm ci builds the client itself.
  started=$(date +%s)
  PATH="$outer/node24:$PATH" npm ci --no-audit --no-fund
  ci2=$(since "$started")
  [ -f "$ric/rapid-client.node" ] || fail "npm ci with npm on Node 24 and the toolchain did not build aws-lambda-ric"
  echo
  say "with cmake, g++, make and python3:"
  echo "  npm ci (npm on Node $(node --version)): $ci1, then npm run runtime-client: $rc1"
  echo "  npm ci (npm on Node $node24, builds aws-lambda-ric): $ci2"
  exit 0
fi

[ ! -e "$ric" ] || fail "aws-lambda-ric is in node_modules after npm ci without the toolchain"
say "npm ci (npm on Node $(node --version)) took $ci1 and left out aws-lambda-ric"

# 2. npm on Node 24: it tries the build, which must fail, and carries on; its log says so.
started=$(date +%s)
PATH="$outer/node24:$PATH" npm ci --no-audit --no-fund --logs-dir="$outer/npm-logs"
ci2=$(since "$started")
[ ! -e "$ric" ] || fail "aws-lambda-ric is in node_modules after npm ci (npm on Node 24) without the toolchain"
grep -q "reify failed optional dependency .*/node_modules/aws-lambda-ric$" "$outer"/npm-logs/*.log ||
  fail "npm's log does not show aws-lambda-ric's build failing: this run proves nothing"
say "npm ci (npm on Node $node24) took $ci2: aws-lambda-ric's build failed and npm carried on without it"

# 3. The way to the client says what is missing.
if out="$(npm run --silent runtime-client 2>&1)"; then fail "npm run runtime-client succeeded without the toolchain"; fi
case "$out" in
  *"apt-get install cmake g++ make python3"*) say "npm run runtime-client refuses: ${out##*$'\n'}" ;;
  *) fail "npm run runtime-client did not say what to install: $out" ;;
esac

# 4. The demo, and the artifact suite's skip line.
npm run demo || fail "npm run demo failed"
log="$outer/artifact.log"
npm test -- test/artifact 2>&1 | tee "$log" || fail "npm test -- test/artifact failed"
line="$(grep -o 'test/artifact skipped: .*' "$log" | head -n 1)" ||
  fail "npm test -- test/artifact did not say why the artifact suite was skipped"

echo
say "passed without cmake, a C/C++ compiler, make or python:"
echo "  npm ci (npm on Node $(node --version)): $ci1"
echo "  npm ci (npm on Node $node24, aws-lambda-ric's build fails and is left out): $ci2"
echo "  npm run demo: passed"
echo "  npm test -- test/artifact: $line"
