#!/usr/bin/env bash
# bench-mem.sh: how much memory a pool of Perl workers takes when they are
# forked by cfk-proxy.pl from one preloaded interpreter, against the same
# number of independent perl processes that each load the data themselves.
#
#   proxies/perl/bench-mem.sh                 # 16 workers, both data shapes
#   WORKERS=8 ENTRIES=200000 VARIANTS=packed proxies/perl/bench-mem.sh
#
# Data shapes (about 200 MB of application state either way):
#   hash         a hash of ENTRIES small strings (key => ~45-byte value),
#                read by iterating it (each) and copying each value
#   hash-lookup  the same hash, read by looking every key up and using the
#                value in place (length $DATA{$key}), copying nothing
#   packed       one string of ENTRIES fixed 200-byte records, read with
#                substr
#
# For each shape and each mode (proxy, independent) it measures the pool's
# total PSS (proxy included) from /proc/PID/smaps_rollup:
#   idle      all workers started and settled
#   idle+10s  ten seconds later, the workers having done nothing: Perl has
#             no garbage collector that would walk the heap, so there is
#             no "after GC" figure to take; this one shows nothing moves
#   read      after every worker has read all the data once
# the time from the launch until all workers report ready (wall clock, and
# the CPU seconds the pool spent), and the CPU seconds a worker spends
# reading all the data (page copies included).
#
# Then (unless PROBE=0) it shows what each way of reading a hash unshares:
# one process builds PROBE_ENTRIES entries and forks a child per way of
# reading; the child's Private_Dirty before and after says how much it had
# to copy.
#
# Needs bash, perl (core modules) and Linux /proc. It drives the proxy
# itself, as cfkd would: three pipes and JSON commands (PROTOCOL.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
proxy=$here/cfk-proxy.pl
workers=${WORKERS:-16}
entries=${ENTRIES:-1000000}
variants=${VARIANTS:-hash hash-lookup packed}
settle=${SETTLE_SECS:-2}
idle_wait=${IDLE_SECS:-10}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The application: its state is built in the preload; walk() reads it all.
cat >"$work/preload.pl" <<'EOF'
use strict;
use warnings;
use POSIX ();
use JSON::PP ();
use Data::Dumper ();
use List::Util ();

our ($VARIANT, %DATA, $PACKED);
use constant RECORD_BYTES => 200;
$VARIANT = $ENV{BENCH_VARIANT};
my $n = $ENV{BENCH_ENTRIES};
if ($VARIANT =~ /^hash/) {
    # A million small strings: what most applications hold.
    $DATA{ sprintf 'key%07d', $_ } = sprintf('value %07d ', $_) . ('x' x 30) for 1 .. $n;
} elsif ($VARIANT eq 'packed') {
    # The same records in one scalar: fixed-width, found by offset.
    $PACKED = '';
    $PACKED .= sprintf('%-200s', sprintf('key%07d value %07d', $_, $_)) for 1 .. $n;
} else {
    die "unknown BENCH_VARIANT '$VARIANT'\n";
}

# walk reads every record once, the way application code would.
sub walk {
    my $sum = 0;
    if ($VARIANT eq 'hash-lookup') {
        # Look every key up, as a request handler would, and use the
        # value in place: nothing is copied.
        for my $i (1 .. $n) {
            $sum += length $DATA{ sprintf 'key%07d', $i };
        }
    } elsif ($VARIANT eq 'hash') {
        # each, not keys: keys would first build a list of a million
        # new key values, memory that has nothing to do with sharing.
        while (my ($k, $v) = each %DATA) {
            $sum += length $v;
        }
    } else {
        for (my $o = 0; $o < length $PACKED; $o += RECORD_BYTES) {
            my $rec = substr($PACKED, $o, RECORD_BYTES);
            $sum += length $rec;
        }
    }
    return $sum;
}
1;
EOF

# A worker: says it is ready, then walks the data on SIGUSR1.
cat >"$work/worker.pl" <<'EOF'
use Time::HiRes ();
$| = 1;
my $walk = 0;
$SIG{USR1} = sub { $walk = 1 };
$SIG{TERM} = sub { exit 0 };
print "ready $$\n";
while (1) {
    sleep 1;
    if ($walk) {
        $walk = 0;
        my ($u, $s) = times;
        my $sum = main::walk();
        my ($u2, $s2) = times;
        printf "walked %d %d %.3f\n", $$, $sum, $u2 + $s2 - $u - $s;   # CPU seconds
    }
}
EOF

# The driver: runs one pool, measures it, prints one result line.
cat >"$work/driver.pl" <<'EOF'
use strict;
use warnings;
use IO::Select;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);

my ($mode, $proxy, $preload, $worker, $n, $settle, $idle_wait) = @ARGV;
$^F = 1000;   # the pipes handed to the proxy must survive its exec

my @pids;          # the workers
my $proxy_pid;
my $lines_fh;      # where "ready PID" / "walked PID" lines come from
my $t0 = time;
my $t_preloaded;   # proxy mode: when the proxy had loaded the data

if ($mode eq 'proxy') {
    pipe(my $cr, my $cw) or die;
    pipe(my $sr, my $sw) or die;
    pipe(my $lr, my $lw) or die;
    $proxy_pid = fork // die;
    if (!$proxy_pid) {
        close $_ for $cw, $sr, $lr;
        $ENV{_CFK_COMMAND_FD} = fileno $cr;
        $ENV{_CFK_STATUS_FD} = fileno $sw;
        $ENV{_CFK_LOG_FD} = fileno $lw;
        open STDIN, '<', '/dev/null';
        exec 'perl', $proxy, '--preload', $preload or die "exec: $!";
    }
    close $_ for $cr, $sw, $lw;
    select((select($cw), $| = 1)[0]);
    for my $i (1 .. $n) {
        print $cw JSON::PP->new->canonical->encode({ command => 'start', name => "w$i", cmd => $worker,
            env => {}, ignore_stdout => 0, ignore_stderr => 0, no_new_session => 0 }), "\n";
    }
    $lines_fh = $lr;
    # Keep the proxy's pipes open until the end; drain statuses as we go.
    our ($keep_cw, $keep_sr) = ($cw, $sr);
} else {
    pipe(my $r, my $w) or die;
    for my $i (1 .. $n) {
        my $pid = fork // die;
        if (!$pid) {
            close $r;
            open STDOUT, '>&', $w or die;
            open STDIN, '<', '/dev/null';
            exec 'perl', '-e', 'require $ARGV[0]; do $ARGV[1]; die $@ if $@', $preload, $worker or die;
        }
        push @pids, $pid;
    }
    close $w;
    $lines_fh = $r;
}

# wait_lines reads lines until $want workers have said $word.
my $buf = '';
sub wait_lines {
    my ($word, $want) = @_;
    my %seen;
    my $sel = IO::Select->new($lines_fh);
    while (keys %seen < $want) {
        $sel->can_read(300) or die "timed out waiting for '$word' ($mode)\n";
        my $got = sysread($lines_fh, $buf, 65536, length $buf);
        die "the workers' pipe closed ($mode)\n" unless $got;
        while ($buf =~ s/^(.*)\n//) {
            my $line = $1;
            $t_preloaded //= time if $line =~ /^out:-:cfk-proxy started/;
            $seen{$1} = $2 if $line =~ /(?:^|:)$word (\d+)(?: \d+ ([\d.]+))?/;
        }
    }
    return \%seen;
}

my $ready = wait_lines('ready', $n);
my $t_ready = time - $t0;
@pids = sort { $a <=> $b } keys %$ready if $mode eq 'proxy';

# The CPU time the pool took to come up (the machine may be busy: wall
# time says less): user + system of the proxy and the workers.
my $start_cpu = 0;
for my $pid (grep { defined } $proxy_pid, @pids) {
    open my $f, '<', "/proc/$pid/stat" or die;
    my @f = split ' ', (<$f> =~ s/^.*\) //r);
    $start_cpu += ($f[11] + $f[12]) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
}

sub mem {
    my %sum = (Pss => 0, Rss => 0);
    for my $pid (grep { defined } $proxy_pid, @pids) {
        open my $f, '<', "/proc/$pid/smaps_rollup" or die "smaps_rollup of $pid: $!";
        while (<$f>) { $sum{$1} += $2 if /^(Pss|Rss):\s+(\d+) kB/ }
    }
    my %one = (Pss => 0, Rss => 0);
    open my $f, '<', "/proc/$pids[0]/smaps_rollup" or die;
    while (<$f>) { $one{$1} = $2 if /^(Pss|Rss):\s+(\d+) kB/ }
    return sprintf '%.0f %.0f %.0f', $sum{Pss} / 1024, $one{Pss} / 1024, $one{Rss} / 1024;
}

sleep $settle;
my $idle = mem();
sleep $idle_wait;
my $idle2 = mem();
kill 'USR1', @pids;
my $walked = wait_lines('walked', $n);
my $walk_cpu = 0;
$walk_cpu += $_ / $n for values %$walked;   # CPU seconds a worker spent reading, on average
my $read = mem();

printf "%s ready_s=%.2f preload_s=%s start_cpu_s=%.2f walk_cpu_s=%.2f idle=%s idle2=%s read=%s\n", $mode,
    $t_ready, defined $t_preloaded ? sprintf('%.2f', $t_preloaded - $t0) : '-', $start_cpu, $walk_cpu,
    map { s/ /,/gr } $idle, $idle2, $read;

if ($mode eq 'proxy') {
    our $keep_cw;
    close $keep_cw;   # EOF on the command pipe: the proxy stops its workers and exits
    waitpid $proxy_pid, 0;
} else {
    kill 'TERM', @pids;
    waitpid $_, 0 for @pids;
}
EOF

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(uname -srm), $(nproc) CPUs, perl $(perl -e 'print $^V')," \
     "THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo '?')"
echo "# WORKERS=$workers ENTRIES=$entries; memory in MiB: pool PSS (proxy included), one worker's PSS, one worker's RSS"
printf '%-12s %-12s %8s %9s %11s %10s %-14s %-14s %-14s\n' variant mode ready_s preload_s start_cpu_s walk_cpu_s \
    idle idle+${idle_wait}s read
for v in $variants; do
    for mode in proxy independent; do
        line=$(BENCH_VARIANT=$v BENCH_ENTRIES=$entries \
            perl "$work/driver.pl" "$mode" "$proxy" "$work/preload.pl" "$work/worker.pl" "$workers" "$settle" "$idle_wait")
        # proxy ready_s=.. preload_s=.. start_cpu_s=.. walk_cpu_s=.. idle=a,b,c idle2=.. read=..
        set -- $line
        printf '%-12s %-12s %8s %9s %11s %10s %-14s %-14s %-14s\n' "$v" "$1" "${2#*=}" "${3#*=}" "${4#*=}" \
            "${5#*=}" "${6#*=}" "${7#*=}" "${8#*=}"
    done
done

[ "${PROBE:-1}" = 0 ] && exit 0
probe_entries=${PROBE_ENTRIES:-500000}
echo
echo "# What reading copies: a hash of $probe_entries small strings and the same records packed"
echo "# in one string; one forked child per way of reading; its Private_Dirty before and after, MiB"
perl - "$probe_entries" <<'EOF'
use strict;
use warnings;
my $n = shift;
our %D;
$D{ sprintf 'key%07d', $_ } = sprintf('value %07d ', $_) . ('x' x 30) for 1 .. $n;
our $P = '';
$P .= sprintf('%-200s', sprintf('key%07d value %07d', $_, $_)) for 1 .. $n;
my @ways = (
    ['hash: look each key up, use the value in place', sub { my $s = 0; $s += length $D{ sprintf 'key%07d', $_ } for 1 .. $n; $s }],
    ['hash: look each key up, copy the value',         sub { my $s = 0; for (1 .. $n) { my $v = $D{ sprintf 'key%07d', $_ }; $s += length $v } $s }],
    ['hash: look each key up, match a regex on it',    sub { my $s = 0; for (1 .. $n) { $s++ if $D{ sprintf 'key%07d', $_ } =~ /9 x/ } $s }],
    ['hash: each (key only), value in place',          sub { my $s = 0; while (defined(my $k = each %D)) { $s += length $D{$k} } $s }],
    ['hash: each (key, value)',                        sub { my $s = 0; while (my ($k, $v) = each %D) { $s += length $v } $s }],
    ['hash: foreach over values',                      sub { my $s = 0; $s += length for values %D; $s }],
    ['hash: foreach over keys (builds the key list)',  sub { my $s = 0; $s++ for keys %D; $s }],
    ['packed: substr of every record',                 sub { my $s = 0; for (my $o = 0; $o < length $P; $o += 200) { my $r = substr($P, $o, 200); $s += length $r } $s }],
    ['packed: unpack of every record',                 sub { my $s = 0; for (my $o = 0; $o < length $P; $o += 200) { my ($k) = unpack("x$o A10", $P); $s += length $k } $s }],
);
sub dirty {
    open my $f, '<', "/proc/$_[0]/smaps_rollup" or die;
    while (<$f>) { return $1 / 1024 if /^Private_Dirty:\s+(\d+) kB/ }
}
sub rss {
    open my $f, '<', "/proc/$_[0]/smaps_rollup" or die;
    while (<$f>) { return $1 / 1024 if /^Rss:\s+(\d+) kB/ }
}
printf "# the parent holds %.0f MiB\n", rss($$);
printf "%-50s %8s %8s\n", 'way of reading', 'before', 'after';
for my $w (@ways) {
    my $pid = fork // die;
    if (!$pid) {
        my $before = dirty($$);
        $w->[1]->();
        printf "%-50s %8.1f %8.1f\n", $w->[0], $before, dirty($$);
        exit 0;
    }
    waitpid $pid, 0;
}
EOF
