#!/bin/sh
# End-to-end test of ember-cd and ember-cc against an installed libember.
#
#   cargo xtask dist --prefix /tmp/ember-dist
#   sh examples/c/run-test.sh /tmp/ember-dist
#
# Builds both programs with `make --always-make` through pkg-config (CC and CFLAGS from the
# environment are honoured: CFLAGS='-fsanitize=address,undefined ...' for a sanitizer
# run), starts the daemon under a temporary directory with names unique to this run, and
# checks get, add, watch, an unknown kind, a reload (good and bad config), and a clean exit
# on SIGTERM that removes the socket and the seqlock segment. Exit status 0 when every
# check passed; 1 with the reason on stderr otherwise. Everything it made is removed on
# every path.
set -u

say() { printf 'run-test: %s\n' "$*"; }
die() {
    printf 'run-test: FAIL: %s\n' "$*" >&2
    exit 1
}

[ $# -eq 1 ] || {
    echo "usage: $0 <dist-prefix>   (from: cargo xtask dist --prefix <dist-prefix>)" >&2
    exit 2
}
case $1 in
/*) prefix=$1 ;;
*) prefix=$(pwd)/$1 ;;
esac
[ -f "$prefix/lib/pkgconfig/ember.pc" ] || die "$prefix/lib/pkgconfig/ember.pc not found (run cargo xtask dist --prefix $1 first)"
here=$(cd "$(dirname "$0")" && pwd) || die "cannot find the script's directory"

tmp=
daemon=
cleanup() {
    if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
        kill -KILL "$daemon" 2>/dev/null
        wait "$daemon" 2>/dev/null
    fi
    if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
    # The segment is ours (the name carries this shell's pid); gone already after a clean
    # exit, left behind only if the daemon had to be killed.
    if [ -n "${seg:-}" ]; then rm -f "/dev/shm/$seg"; fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ember-c.XXXXXX") || die "mktemp failed"

# ---- Build -----------------------------------------------------------------------------
say "building with PKG_CONFIG_PATH=$prefix/lib/pkgconfig"
PKG_CONFIG_PATH=$prefix/lib/pkgconfig make -C "$here" --always-make >"$tmp/build.log" 2>&1 || {
    cat "$tmp/build.log" >&2
    die "make failed"
}
# A host dist links libember.so: find it without installing it.
LD_LIBRARY_PATH=$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH

seg=ember-c-test-$$
sock=$tmp/cd.sock
conf=$tmp/cd.conf
out=$tmp/daemon.out
err=$tmp/daemon.err
cd_bin=$here/ember-cd
cc_bin=$here/ember-cc

# ---- Helpers ---------------------------------------------------------------------------
# Is process $1 running (not a zombie waiting to be reaped)?
running() {
    [ -r "/proc/$1/stat" ] || return 1
    state=$(sed -n 's/^.*) \([A-Za-z]\) .*$/\1/p' "/proc/$1/stat" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# wait_for FILE TEXT SECONDS: until FILE has a line containing TEXT; fails if the daemon
# ended first or the time ran out.
wait_for() {
    n=0
    limit=$(($3 * 20))
    while ! grep -qF -- "$2" "$1" 2>/dev/null; do
        running "$daemon" || {
            cat "$out" "$err" >&2
            die "ember-cd ended while waiting for '$2'"
        }
        n=$((n + 1))
        [ "$n" -le "$limit" ] || {
            cat "$out" "$err" >&2
            die "no '$2' from ember-cd after $3 s"
        }
        sleep 0.05
    done
}

# client EXPECTED_STATUS ARGS...: runs ember-cc, leaves its stdout in $got and its stderr
# in $got_err, fails unless it exited with EXPECTED_STATUS.
client() {
    want=$1
    shift
    "$cc_bin" -t 3000 "$sock" "$seg" "$@" >"$tmp/cc.out" 2>"$tmp/cc.err"
    status=$?
    got=$(cat "$tmp/cc.out")
    got_err=$(cat "$tmp/cc.err")
    [ "$status" -eq "$want" ] || die "ember-cc $*: exit status $status, expected $want; stdout: '$got'; stderr: '$got_err'"
}

# field NAME TEXT: the number after the word NAME in TEXT (first line that has it).
field() {
    printf '%s\n' "$2" | sed -n "s/^/ /; s/^.* $1 \\(-\\{0,1\\}[0-9][0-9]*\\).*\$/\\1/p" | head -n 1
}

# ---- Start -----------------------------------------------------------------------------
echo "interval_ms=20" >"$conf"
"$cd_bin" "$sock" "$seg" "$conf" >"$out" 2>"$err" &
daemon=$!
wait_for "$out" "ember-cd: ready" 10
say "$(head -n 1 "$out") (pid $daemon)"

# ---- get, add, get ---------------------------------------------------------------------
client 0 get
say "get: $got"
c0=$(field counter "$got")
o0=$(field offset "$got")
[ -n "$c0" ] && [ "$o0" = 0 ] || die "get printed '$got', expected 'counter N offset 0'"

client 0 add 5
say "add 5: $got"
c1=$(field counter "$got")
o1=$(field offset "$got")
[ "$o1" = 5 ] || die "add 5 printed '$got', expected offset 5"
[ "$c1" -ge $((c0 + 5)) ] || die "add 5: counter $c1, expected at least $c0 + 5"

client 0 get
say "get: $got"
c2=$(field counter "$got")
o2=$(field offset "$got")
[ "$o2" = 5 ] || die "get after add 5 printed '$got', expected offset 5"
[ "$c2" -ge "$c1" ] || die "get after add 5: counter $c2 went below $c1"

# ---- watch -----------------------------------------------------------------------------
client 0 watch 2
say "watch 2:"
printf '%s\n' "$got" | sed 's/^/    /'
[ "$(printf '%s\n' "$got" | grep -c '^counter ')" -eq 2 ] || die "watch 2 printed '$got', expected two counter lines"
w0=$(printf '%s\n' "$got" | sed -n 1p)
w1=$(printf '%s\n' "$got" | sed -n 2p)
wc0=$(field counter "$w0")
wc1=$(field counter "$w1")
[ -n "$wc0" ] && [ -n "$wc1" ] && [ "$wc1" -gt "$wc0" ] || die "watch 2: counters '$wc0' then '$wc1', expected them to increase"
[ "$wc0" -ge "$c2" ] || die "watch 2: counter $wc0 below the last get ($c2)"
[ "$(field offset "$w1")" = 5 ] || die "watch 2: '$w1' has not offset 5"

# ---- An unknown kind -------------------------------------------------------------------
client 1 bogus
say "bogus: exit 1, stderr: $got_err"
case $got_err in
*"remote error 1 (unknown kind)"*) ;;
*) die "bogus: stderr '$got_err', expected the remote error 'remote error 1 (unknown kind)'" ;;
esac
[ -z "$got" ] || die "bogus printed '$got' on stdout"

# ---- Bad command lines -----------------------------------------------------------------
client 2 add five
client 2 frobnicate
say "bad command lines: exit 2"

# ---- Reload ----------------------------------------------------------------------------
echo "interval_ms=50" >"$conf"
kill -HUP "$daemon" || die "kill -HUP $daemon failed"
wait_for "$out" "ember-cd: reloaded: interval_ms=50" 5
say "SIGHUP: $(grep -F 'reloaded' "$out" | tail -n 1)"
client 0 get
say "get after reload: $got"
[ "$(field offset "$got")" = 5 ] || die "get after reload printed '$got', expected offset 5"

echo "interval_ms=50" >"$conf.good"
printf 'interval_ms = banana\n' >"$conf"
kill -HUP "$daemon" || die "kill -HUP $daemon failed"
wait_for "$err" "keeping interval_ms=50" 5
say "SIGHUP with a bad config: $(grep -F 'keeping' "$err" | tail -n 1)"
client 0 watch 2
say "watch 2 after the bad reload: $(printf '%s' "$got" | tr '\n' '|')"
client 0 get
[ "$(field offset "$got")" = 5 ] || die "get after a bad reload printed '$got', expected offset 5"

# ---- kill -9, then restart --------------------------------------------------------------
# A daemon killed with SIGKILL cannot clean up: its seqlock stays in /dev/shm. The next run
# takes it over (EMBER_REPLACE_STALE); a second run beside a live one refuses to start.
kill -KILL "$daemon" || die "kill -KILL $daemon failed"
wait "$daemon" 2>/dev/null
killed=$daemon
[ -e "/dev/shm/$seg" ] || die "the killed ember-cd's /dev/shm/$seg is gone, expected it left behind"
: >"$out"
"$cd_bin" "$sock" "$seg" "$conf.good" >"$out" 2>>"$err" &
daemon=$!
wait_for "$out" "ember-cd: ready" 10
say "kill -9 $killed, restarted: $(head -n 1 "$out") (pid $daemon)"
client 0 get
say "get after the restart: $got"
[ "$(field offset "$got")" = 0 ] || die "get after the restart printed '$got', expected offset 0 (a new run)"
"$cd_bin" "$tmp/second.sock" "$seg" >"$tmp/second.out" 2>"$tmp/second.err"
status=$?
[ "$status" -eq 1 ] || die "a second ember-cd beside pid $daemon exited $status, expected 1"
grep -qF "another ember-cd (pid $daemon) runs" "$tmp/second.err" || {
    cat "$tmp/second.err" >&2
    die "a second ember-cd did not name pid $daemon"
}
say "a second ember-cd: exit 1, $(grep -F 'another ember-cd' "$tmp/second.err")"

# ---- Shutdown --------------------------------------------------------------------------
[ -S "$sock" ] || die "no socket at $sock while running"
[ -e "/dev/shm/$seg" ] || die "no /dev/shm/$seg while running"
kill -TERM "$daemon" || die "kill -TERM $daemon failed"
n=0
while running "$daemon"; do
    n=$((n + 1))
    [ "$n" -le 100 ] || die "ember-cd still runs 5 s after SIGTERM"
    sleep 0.05
done
wait "$daemon"
status=$?
d=$daemon
daemon=
[ "$status" -eq 0 ] || {
    cat "$out" "$err" >&2
    die "ember-cd exited with status $status after SIGTERM, expected 0"
}
[ ! -e "/dev/shm/$seg" ] || die "ember-cd left /dev/shm/$seg behind"
[ ! -e "$sock" ] || die "ember-cd left its socket $sock behind"
grep -qF "ember-cd: stopped" "$out" || die "no 'ember-cd: stopped' from ember-cd"
say "SIGTERM: ember-cd (pid $d) exited 0; /dev/shm/$seg and $sock are gone"
if [ -s "$err" ]; then
    say "ember-cd stderr:"
    sed 's/^/    /' "$err"
fi
# Anything else on stderr than the bad reload's line is a failure (a sanitizer report).
if grep -vF "keeping interval_ms=50" "$err" | grep -q .; then
    die "unexpected output on ember-cd's stderr"
fi
say "PASS"
exit 0
