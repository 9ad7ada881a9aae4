#!/usr/bin/env perl
# cfk-proxy.pl: a ControlFreak proxy that forks services out of one
# preloaded Perl interpreter, so that what the preload loaded is shared
# copy-on-write by every worker. The protocol is proxies/PROTOCOL.md; the
# documentation (perldoc cfk-proxy.pl, or --man) is at the end of the file.
#
# Core modules only: it runs on any Perl 5.14+ (JSON::PP became core in
# 5.14) without a CPAN install.
use strict;
use warnings;

# The proxy's own subs live here, out of the way of the application's: the
# preload and the services are compiled in package main, as scripts are,
# and may well define a sub run or import max.
package CfkProxy;

use Errno qw(EAGAIN EINTR ESRCH EWOULDBLOCK);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK O_RDONLY O_RDWR);
use Getopt::Long qw(:config no_ignore_case bundling);
use IO::Select;
use JSON::PP ();
use POSIX ();
use Pod::Usage qw(pod2usage);
use Time::HiRes ();

use constant {
    READ_CHUNK_BYTES     => 64 * 1024,
    # A line a service writes longer than this is logged in pieces this
    # long (cfkd reads log lines in pieces of the same size).
    MAX_LINE_BYTES       => 16 * 1024,
    # Log lines kept while cfkd does not read the log pipe; beyond this the
    # oldest are dropped and counted. Statuses are never dropped.
    MAX_LOG_BUFFER_BYTES => 1024 * 1024,
    # What one write to a pipe takes from a queue at most.
    WRITE_CHUNK_BYTES    => 64 * 1024,
    # What draining an exited service's pipes reads at most, so that a
    # grandchild that keeps writing cannot hold the exit report back.
    MAX_DRAIN_BYTES      => 1024 * 1024,
    # At shutdown, children get this long after TERM before KILL. cfkd
    # KILLs a proxy 3 s after its TERM: this leaves time to KILL, reap and
    # report before that.
    SHUTDOWN_GRACE_SECS  => 2,
    KILL_WAIT_SECS       => 0.5,
    FINAL_FLUSH_SECS     => 0.5,
    # Bounds the wait of select while children run. SIGCHLD wakes the loop
    # at once when it interrupts select; but a signal that lands in the few
    # microseconds between Perl's last signal check and the select call
    # itself is only seen when select returns. Perl has no pselect.
    REAP_SAFETY_SECS     => 1,
    # Exits of pids not (yet) known as services: kept this long, this many.
    UNKNOWN_EXIT_TTL_SECS => 60,
    MAX_UNKNOWN_EXITS    => 1024,
    # Fds 3 .. 3+RESERVED_LOW_FDS-1 are kept busy while the preload runs,
    # so that files it opens do not sit where LISTEN_FDS sockets go.
    RESERVED_LOW_FDS     => 16,
    # Exit codes of a child that could not run its service (perl's own:
    # 2 when the script cannot be opened, 255 when it dies).
    EXIT_SETUP_FAILED    => 127,
    EXIT_NO_SCRIPT       => 2,
    EXIT_DIED            => 255,
};

my $PROG = 'cfk-proxy';

# --- state ---------------------------------------------------------------

my %opt;
my $svc_code;        # the code reference the preload returned, if any
my %preload_fd;      # fds the preload opened: part of the application, kept by children
my %socket_fd;       # socket name => fd, from _CFK_SOCK_<name>
my ($cmd_fh, $wake_r, $wake_w);
my %out;             # 'status' and 'log': the pipes to cfkd and what waits for them
my $read_set = IO::Select->new;
my %reader;          # fileno => what to do when that handle is readable
my %service;         # name => the running service of that name
my %service_of_pid;  # pid => service
my %unknown_exit;    # pid => { status, time, round }: reaped before its start was recorded
my $reap_round = 0;  # counts calls of reap_children
my $cmd_buf = '';
my $stop_signal;       # set by the TERM/INT/HUP handlers
my $shutdown;          # { deadline, killed } once stopping
my $startup_mask;      # the signal mask the proxy started with, restored in children
my $json_in  = JSON::PP->new->utf8;
my $json_out = JSON::PP->new->allow_nonref;   # fed byte strings: writes them as they are

# --- entry point ---------------------------------------------------------

sub main {
    GetOptions(
        'p|preload=s' => \$opt{preload},
        'h|help'      => \$opt{help},
        'm|man'       => \$opt{man},
    ) or pod2usage(-exitval => 2, -verbose => 0);
    pod2usage(-exitval => 0, -verbose => 1) if $opt{help};
    pod2usage(-exitval => 0, -verbose => 2, -noperldoc => 1) if $opt{man};
    pod2usage(-exitval => 2, -verbose => 0, -message => "$PROG: --preload FILE is required")
        unless defined $opt{preload} && length $opt{preload};

    my %fd;
    for my $which (qw(COMMAND STATUS LOG)) {
        my $v = $ENV{"_CFK_${which}_FD"};
        die "$PROG: _CFK_${which}_FD is not set: this program is started by cfkd\n"
            unless defined $v && $v =~ /^\d+$/;
        $fd{$which} = $v;
    }
    for my $k (keys %ENV) {
        next unless $k =~ /^_CFK_SOCK_(.+)$/;
        my $name = $1;
        if ($ENV{$k} =~ /^\d+$/) {
            $socket_fd{$name} = $ENV{$k} + 0;
        } else {
            warn "$PROG: ignoring $k: '$ENV{$k}' is not an fd number\n";
        }
    }

    # Statuses and logs are written with syswrite: nothing is buffered in
    # PerlIO, and $| on STDOUT makes the workers' print reach their pipe
    # at once too (they inherit it).
    $| = 1;
    select((select(STDERR), $| = 1)[0]);

    $svc_code = preload($opt{preload});

    open($cmd_fh, '<&=', $fd{COMMAND})
        or die "$PROG: cannot open the command pipe (fd $fd{COMMAND}): $!\n";
    for my $which (qw(STATUS LOG)) {
        open(my $fh, '>>&=', $fd{$which})
            or die "$PROG: cannot open the \L$which\E pipe (fd $fd{$which}): $!\n";
        nonblocking($fh);
        $out{lc $which} = { fh => $fh, queue => [], bytes => 0, pending => '',
                            droppable => $which eq 'LOG', dropped => 0 };
    }
    nonblocking($cmd_fh);
    add_reader($cmd_fh, \&on_command_data, \&on_command_eof);

    pipe($wake_r, $wake_w) or die "$PROG: pipe: $!\n";
    nonblocking($_) for $wake_r, $wake_w;
    add_reader($wake_r, sub { 1 }, sub { 1 });

    $startup_mask = POSIX::SigSet->new;
    POSIX::sigprocmask(POSIX::SIG_BLOCK(), POSIX::SigSet->new, $startup_mask);
    $SIG{PIPE} = 'IGNORE';   # a closed pipe is an EPIPE error, handled where written
    $SIG{CHLD} = \&wake;   # the loop reaps
    $SIG{$_} = sub { $stop_signal ||= "SIG$_[0]"; wake() } for qw(TERM INT HUP);

    log_line(out => '-', sprintf('%s started (pid %d, preload %s%s)', $PROG, $$, $opt{preload},
        $svc_code ? ', which returned code: every service runs it' : ''));
    run();
}

# preload loads FILE once, with require, and returns the code reference it
# returned, if any. It records the fds the preload opened, so that children
# keep them and nothing else.
sub preload {
    my ($file) = @_;
    # "." is no longer in @INC: a relative path that names a file is taken
    # relative to the current directory, as the operator meant.
    my $path = (-e $file && $file !~ m{^\.{0,2}/}) ? "./$file" : $file;

    my @reserved;
    while (1) {
        my $fd = POSIX::open('/dev/null', O_RDONLY);
        last unless defined $fd;
        if ($fd >= 3 + RESERVED_LOW_FDS) {
            POSIX::close($fd);
            last;
        }
        push @reserved, $fd;
    }
    my %before = map { $_ => 1 } @{ open_fds() || [] };

    my $ret = eval { package main; require $path };
    my $err = $@;

    if (my $after = open_fds()) {
        %preload_fd = map { $_ => 1 } grep { !$before{$_} } @$after;
    }
    POSIX::close($_) for @reserved;
    if ($err) {
        print STDERR "$PROG: cannot preload $file: $err";
        exit 1;
    }
    return ref $ret eq 'CODE' ? $ret : undef;
}

# --- the loop ------------------------------------------------------------

sub run {
    while (1) {
        reap_children();
        begin_shutdown("got $stop_signal") if $stop_signal;
        if ($shutdown) {
            my $now = Time::HiRes::time();
            last unless %service_of_pid;
            if ($now >= $shutdown->{deadline}) {
                last if $shutdown->{killed};
                my @pids = sort { $a <=> $b } keys %service_of_pid;
                log_line(err => '-', "still running after ${\SHUTDOWN_GRACE_SECS} s, killing: @pids");
                signal_service($_, 'KILL') for values %service_of_pid;
                $shutdown->{killed} = 1;
                $shutdown->{deadline} = $now + KILL_WAIT_SECS;
            }
        }
        flush_outputs();

        my $write_set = IO::Select->new(map { $_->{fh} } grep { waiting($_) } values %out);
        my @ready = IO::Select->select($read_set, $write_set->count ? $write_set : undef,
                                       undef, select_timeout());
        if (!@ready) {
            # A timeout, or EINTR: a signal handler ran. Either way the top
            # of the loop does what is due.
            next;
        }
        for my $fh (@{ $ready[0] || [] }) {
            # A handle an earlier one's handling closed has no fileno.
            my $fd = fileno $fh;
            my $r = defined $fd && $reader{$fd};
            read_from($r) if $r && $r->{fh} == $fh;
        }
    }
    finish();
}

sub select_timeout {
    my $now = Time::HiRes::time();
    my @t;
    push @t, $shutdown->{deadline} - $now if $shutdown;
    push @t, REAP_SAFETY_SECS if %service_of_pid;
    return undef unless @t;
    my ($min) = sort { $a <=> $b } @t;
    return $min < 0 ? 0 : $min;
}

sub wake { syswrite($wake_w, 'x') if $wake_w }

# finish reports what is left, waits a little for cfkd to take it, and exits.
sub finish {
    my $left = scalar keys %service_of_pid;
    log_line(err => '-', "exiting with $left services still running") if $left;
    log_line(out => '-', "$PROG exiting");
    my $deadline = Time::HiRes::time() + FINAL_FLUSH_SECS;
    while (1) {
        flush_outputs();
        my @busy = map { $_->{fh} } grep { waiting($_) } values %out;
        my $left_secs = $deadline - Time::HiRes::time();
        last if !@busy || $left_secs <= 0;
        IO::Select->select(undef, IO::Select->new(@busy), undef, $left_secs);
    }
    exit 0;
}

# --- reading -------------------------------------------------------------

sub add_reader {
    my ($fh, $on_data, $on_eof, %more) = @_;
    $reader{fileno $fh} = { fh => $fh, on_data => $on_data, on_eof => $on_eof, %more };
    $read_set->add($fh);
}

sub remove_reader {
    my ($r) = @_;
    $read_set->remove($r->{fh});
    delete $reader{fileno $r->{fh}};
    close $r->{fh};
    $r->{closed} = 1;
}

# read_from reads what one handle has: data, EOF, or nothing yet. It
# returns the number of bytes read (0 at EOF or when nothing was there).
sub read_from {
    my ($r) = @_;
    my $n = sysread($r->{fh}, my $buf, READ_CHUNK_BYTES);
    if (!defined $n) {
        return 0 if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
        log_line(err => '-', "read error: $!");
        $n = 0;
    }
    if ($n == 0) {
        remove_reader($r);
        $r->{on_eof}->($r);
        return 0;
    }
    $r->{on_data}->($r, $buf);
    return $n;
}

sub on_command_data {
    my (undef, $data) = @_;
    $cmd_buf .= $data;
    while ((my $nl = index($cmd_buf, "\n")) >= 0) {
        my $line = substr($cmd_buf, 0, $nl + 1, '');
        handle_command($line);
    }
}

sub on_command_eof {
    handle_command($cmd_buf) if $cmd_buf =~ /\S/;
    $cmd_buf = '';
    begin_shutdown('the command pipe is closed (cfkd is gone)');
}

# A service's stdout or stderr: lines become log lines, a partial line
# waits for its end, and a line too long is cut.
sub on_service_output {
    my ($r, $data) = @_;
    $r->{buf} .= $data;
    while (1) {
        my $nl = index($r->{buf}, "\n");
        if ($nl >= 0 && $nl <= MAX_LINE_BYTES) {
            my $line = substr($r->{buf}, 0, $nl + 1, '');
            chop $line;
            log_line($r->{type}, $r->{name}, $line);
        } elsif (length $r->{buf} > MAX_LINE_BYTES) {
            log_line($r->{type}, $r->{name}, substr($r->{buf}, 0, utf8_cut($r->{buf}), ''));
        } else {
            last;
        }
    }
}

sub on_service_output_eof {
    my ($r) = @_;
    log_line($r->{type}, $r->{name}, $r->{buf}) if length $r->{buf};
    $r->{buf} = '';
}

# utf8_cut is where to cut a long line at most MAX_LINE_BYTES in, moved
# back to the start of a UTF-8 character when that is near.
sub utf8_cut {
    my $cut = MAX_LINE_BYTES;
    for my $back (0 .. 3) {
        my $c = ord substr($_[0], $cut - $back, 1);
        return $cut - $back if ($c & 0xC0) != 0x80;
    }
    return $cut;
}

# --- writing to cfkd -----------------------------------------------------

sub send_status {
    my ($status, $name, $pid, $wait_status) = @_;
    my $line = '{"status":' . $json_out->encode($status)
             . ',"name":' . $json_out->encode($name)
             . ',"pid":' . int($pid);
    $line .= ',"exit_status":' . int($wait_status) if defined $wait_status;
    enqueue($out{status}, "$line}\n");
}

# log_line queues `TYPE:SERVICE:MESSAGE`; SERVICE '-' is the proxy itself.
sub log_line {
    my ($type, $name, $msg) = @_;
    $msg =~ s/[\r\n]+/ /g if $name eq '-';
    enqueue($out{log}, "$type:$name:$msg\n");
}

sub enqueue {
    my ($o, $line) = @_;
    return if !$o || $o->{closed};
    push @{ $o->{queue} }, $line;
    $o->{bytes} += length $line;
    if ($o->{droppable}) {
        while ($o->{bytes} > MAX_LOG_BUFFER_BYTES && @{ $o->{queue} } > 1) {
            $o->{bytes} -= length shift @{ $o->{queue} };
            $o->{dropped}++;
        }
    }
}

sub waiting { my ($o) = @_; !$o->{closed} && (length $o->{pending} || @{ $o->{queue} }) }

# flush_outputs writes what the pipes to cfkd take without blocking. A
# line is never dropped once its first byte is written.
sub flush_outputs {
    for my $which (qw(status log)) {
        my $o = $out{$which};
        while (!$o->{closed}) {
            if (!length $o->{pending}) {
                if ($o->{dropped}) {
                    # cfkd is reading again: say what it missed, before
                    # the newer lines that were kept.
                    my $n = $o->{dropped};
                    $o->{dropped} = 0;
                    $o->{pending} = "err:-:$n log lines were dropped: cfkd was not reading the log pipe\n";
                }
                while (@{ $o->{queue} } && length $o->{pending} < WRITE_CHUNK_BYTES) {
                    my $line = shift @{ $o->{queue} };
                    $o->{bytes} -= length $line;
                    $o->{pending} .= $line;
                }
                last unless length $o->{pending};
            }
            my $n = syswrite($o->{fh}, $o->{pending});
            if (!defined $n) {
                last if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                # EPIPE: cfkd closed its end. Nobody will read this pipe again.
                my $err = "$!";
                $o->{closed} = 1;
                @{ $o->{queue} } = ();
                $o->{pending} = '';
                print STDERR "$PROG: cannot write to the $which pipe: $err\n";
                begin_shutdown("the $which pipe is closed (cfkd is gone)") if $which eq 'status';
                last;
            }
            substr($o->{pending}, 0, $n, '');
        }
    }
}

# --- commands ------------------------------------------------------------

sub handle_command {
    my ($line) = @_;
    $line =~ s/\r?\n\z//;
    return unless $line =~ /\S/;
    my $c = eval { $json_in->decode($line) };
    if (!defined $c) {
        (my $why = $@ || 'null') =~ s/,? at \S+ line \d+\.?\s*\z//;
        log_line(err => '-', 'malformed command ' . excerpt($line) . ": $why");
        return;
    }
    if (ref $c ne 'HASH') {
        log_line(err => '-', 'malformed command ' . excerpt($line) . ': not a JSON object');
        return;
    }
    $c = to_bytes($c);
    my $verb = defined $c->{command} && !ref $c->{command} ? $c->{command} : '';
    if ($verb eq 'start') {
        start_service($c);
    } elsif ($verb eq 'stop') {
        stop_service($c);
    } else {
        log_line(err => '-', "unknown command '$verb' in " . excerpt($line));
    }
}

sub excerpt {
    my ($s) = @_;
    $s = substr($s, 0, 200) . '...' if length $s > 200;
    return "'$s'";
}

# to_bytes turns every string of a decoded command back into UTF-8 bytes:
# names, paths and the environment are bytes to the system.
sub to_bytes {
    my ($v) = @_;
    if (ref $v eq 'HASH') {
        my %h;
        for my $k (keys %$v) {
            my $kb = $k;
            utf8::encode($kb);
            $h{$kb} = to_bytes($v->{$k});
        }
        return \%h;
    }
    return [ map { to_bytes($_) } @$v ] if ref $v eq 'ARRAY';
    return $v if ref $v || !defined $v;   # JSON::PP::Boolean
    my $s = "$v";
    utf8::encode($s);
    return $s;
}

sub start_service {
    my ($c) = @_;
    my $name = $c->{name};
    if (!defined $name || ref $name || !length $name || $name =~ /[:\n]/) {
        log_line(err => '-', 'start: the command has no valid service name');
        return;
    }
    if ($shutdown) {
        log_line(err => '-', "not starting $name: the proxy is shutting down");
        return;
    }
    if (my $svc = $service{$name}) {
        # Already running: say so again rather than start a second one.
        log_line(err => '-', "$name is already running (pid $svc->{pid})");
        send_status(started => $name, $svc->{pid}) if $svc->{announced};
        return;
    }
    spawn($c);
}

sub stop_service {
    my ($c) = @_;
    my $name = defined $c->{name} && !ref $c->{name} ? $c->{name} : '';
    my $svc = $service{$name};
    unless ($svc) {
        log_line(err => '-', "stop: unknown service '$name' (not running in this proxy)");
        return;
    }
    log_line(out => '-', "stopping $name (pid $svc->{pid})");
    signal_service($svc, 'TERM');
}

# signal_service signals a service's process group, or the service alone
# under no_new_session.
sub signal_service {
    my ($svc, $sig) = @_;
    my $pid = $svc->{pid};
    if (!$svc->{no_new_session}) {
        return if kill "-$sig", $pid;
        # ESRCH: the child has not called setsid yet. Its signals are
        # blocked until it has reset their handlers, so it gets this one.
        return unless $! == ESRCH;
    }
    kill $sig, $pid;
}

sub begin_shutdown {
    my ($why) = @_;
    return if $shutdown;
    my @svcs = values %service_of_pid;
    log_line(out => '-', "$why: stopping " . scalar(@svcs) . ' services and exiting');
    $shutdown = { deadline => Time::HiRes::time() + SHUTDOWN_GRACE_SECS, killed => 0 };
    signal_service($_, 'TERM') for @svcs;
}

# --- children ------------------------------------------------------------

sub truthy { my ($v) = @_; defined $v && $v ? 1 : 0 }   # JSON false, 0, "" and null are false

# spawn forks one service. Everything the child needs is decided here,
# before the fork; what cannot work is told to the child, which says it on
# its stderr (the service's log) and exits 127, so that cfkd sees the
# start fail the way any failing service does.
sub spawn {
    my ($c) = @_;
    my $name = $c->{name};
    my @problems;

    my ($file, @args, $shown);
    my $cmd = $c->{cmd};
    if ($svc_code) {
        $shown = ref $cmd eq 'ARRAY' ? join(' ', grep { !ref } @$cmd) : defined $cmd && !ref $cmd ? $cmd : '';
    } elsif (ref $cmd eq 'ARRAY' && @$cmd && !grep { !defined || ref } @$cmd) {
        ($file, @args) = @$cmd;
        $shown = join ' ', @$cmd;
    } elsif (defined $cmd && !ref $cmd && $cmd =~ /\S/) {
        # A file name, or (when no file has that name) a file and its
        # arguments separated by spaces.
        ($file, @args) = -e $cmd ? ($cmd) : split(' ', $cmd);
        $shown = $cmd;
    } else {
        push @problems, 'cmd must be the path of a Perl file, or an array of strings';
        $shown = '';
    }

    my $env = $c->{env};
    if (defined $env && ref $env ne 'HASH') {
        push @problems, 'env must be a JSON object';
        $env = undef;
    }

    my $stdin;
    my $tie = $c->{tie_stdin_to};
    if (defined $tie && !ref $tie && length $tie) {
        $stdin = $socket_fd{$tie};
        push @problems, "socket '$tie' (tie_stdin_to) was not given to this proxy" unless defined $stdin;
    }
    my @socks = ref $c->{sockets} eq 'ARRAY' ? grep { defined && !ref } @{ $c->{sockets} } : ();
    for (@socks) {
        push @problems, "socket '$_' was not given to this proxy" unless defined $socket_fd{$_};
    }
    log_line(err => '-', "$name cannot run: $_") for @problems;

    # The child closes the ready pipe once it is set up (own session, fds,
    # environment) and about to run the service: only then is it
    # "started" for cfkd, which may signal its process group at once.
    my ($ready_r, $ready_w, $out_r, $out_w, $err_r, $err_w);
    pipe($ready_r, $ready_w) or return fork_failed($c, "pipe: $!");
    unless (truthy($c->{ignore_stdout})) {
        pipe($out_r, $out_w) or return fork_failed($c, "pipe: $!");
    }
    unless (truthy($c->{ignore_stderr})) {
        pipe($err_r, $err_w) or return fork_failed($c, "pipe: $!");
    }

    my $svc = {
        name => $name,
        no_new_session => truthy($c->{no_new_session}),
    };
    # No signal reaches the child before it has put its handlers back to
    # the defaults: a TERM meant for it must not run the proxy's handler.
    my $all = POSIX::SigSet->new;
    $all->fillset;
    my $mask = POSIX::SigSet->new;
    POSIX::sigprocmask(POSIX::SIG_BLOCK(), $all, $mask);
    my $round = $reap_round;
    my $pid = fork;
    if (!defined $pid) {
        my $err = "$!";
        POSIX::sigprocmask(POSIX::SIG_SETMASK(), $mask);
        close $_ for grep { defined } $ready_r, $ready_w, $out_r, $out_w, $err_r, $err_w;
        return fork_failed($c, "fork: $err");
    }
    if ($pid == 0) {
        run_child($svc, {
            problems => \@problems,
            file => $file, args => \@args, shown => $shown, env => $env,
            stdin => $stdin, stdout => $out_w, stderr => $err_w, ready => $ready_w,
            sockets => [ map { [ $_, $socket_fd{$_} ] } grep { defined $socket_fd{$_} } @socks ],
            close => [ grep { defined } $ready_r, $out_r, $err_r ],
        });
    }
    POSIX::sigprocmask(POSIX::SIG_SETMASK(), $mask);

    close $_ for grep { defined } $ready_w, $out_w, $err_w;
    $svc->{pid} = $pid;
    nonblocking($ready_r);
    add_reader($ready_r, sub { 1 }, sub { announce($svc) });
    $svc->{ready} = $reader{fileno $ready_r};
    for ([out => $out_r], [err => $err_r]) {
        my ($type, $fh) = @$_;
        next unless $fh;
        nonblocking($fh);
        my $r = { type => $type, name => $name, buf => '' };
        add_reader($fh, \&on_service_output, \&on_service_output_eof, %$r);
        push @{ $svc->{readers} }, $reader{fileno $fh};
    }
    $service{$name} = $svc;
    $service_of_pid{$pid} = $svc;

    # An exit of this pid reaped before its start was recorded is reported
    # now; one reaped before the fork was an earlier process that had the
    # same pid. The loop records a start before it reaps again, so the
    # first cannot happen here (it did in the original, which reaped in the
    # signal handler), but the second can.
    if (my $e = delete $unknown_exit{$pid}) {
        service_exited($svc, $e->{status}) if $e->{round} > $round;
    }
}

# announce tells cfkd a service is started, once.
sub announce {
    my ($svc) = @_;
    return if $svc->{announced}++;
    remove_reader($svc->{ready}) unless $svc->{ready}{closed};
    log_line(out => '-', "started $svc->{name} (pid $svc->{pid})");
    send_status(started => $svc->{name}, $svc->{pid});
}

# fork_failed says why a start could not fork. No status can be sent
# without a pid: cfkd fails the start when its startwait_secs pass, and its
# backoff rules try again.
sub fork_failed {
    my ($c, $why) = @_;
    log_line(err => '-', "cannot start $c->{name}: $why");
    return;
}

sub reap_children {
    $reap_round++;
    while ((my $pid = waitpid(-1, POSIX::WNOHANG())) > 0) {
        my $status = $?;
        if (my $svc = $service_of_pid{$pid}) {
            service_exited($svc, $status);
            next;
        }
        # Not a service (yet): a child whose start is not recorded, or one
        # the preloaded code forked itself. Remember it for a while.
        my $now = Time::HiRes::time();
        $unknown_exit{$pid} = { status => $status, time => $now, round => $reap_round };
        for my $p (keys %unknown_exit) {
            delete $unknown_exit{$p} if $now - $unknown_exit{$p}{time} > UNKNOWN_EXIT_TTL_SECS;
        }
        if (keys %unknown_exit > MAX_UNKNOWN_EXITS) {
            my @old = sort { $unknown_exit{$a}{time} <=> $unknown_exit{$b}{time} } keys %unknown_exit;
            delete @unknown_exit{ @old[0 .. $#old - MAX_UNKNOWN_EXITS] };
        }
    }
}

# service_exited reports one exit of a started service, once: what its
# pipes still hold first, so its last lines come before its status.
sub service_exited {
    my ($svc, $status) = @_;
    announce($svc);   # an exit before the ready pipe was read is a start, too
    delete $service_of_pid{ $svc->{pid} };
    delete $service{ $svc->{name} } if ($service{ $svc->{name} } || 0) == $svc;
    for my $r (@{ $svc->{readers} || [] }) {
        my $got = 0;
        while (!$r->{closed} && $got < MAX_DRAIN_BYTES) {
            my $n = read_from($r);
            last unless $n;
            $got += $n;
        }
    }
    log_line(out => '-', "$svc->{name} (pid $svc->{pid}) " . describe_status($status));
    send_status(stopped => $svc->{name}, $svc->{pid}, $status);
}

sub describe_status {
    my ($s) = @_;
    return 'exited with status ' . ($s >> 8) unless $s & 127;
    return 'killed by signal ' . ($s & 127) . ($s & 128 ? ' (core dumped)' : '');
}

# run_child is the forked child: it becomes the service and never returns.
sub run_child {
    my ($svc, $p) = @_;
    my $name = $svc->{name};

    $SIG{$_} = 'DEFAULT' for qw(CHLD TERM INT HUP PIPE);
    my @late;   # said on the service's stderr once it is in place
    unless ($svc->{no_new_session}) {
        POSIX::setsid() or push @late, "setsid: $!";
    }
    POSIX::sigprocmask(POSIX::SIG_SETMASK(), $startup_mask);

    # The fds: 0 1 2, then the asked sockets at 3, 4, ...
    my $null;
    my $devnull = sub { $null //= POSIX::open('/dev/null', O_RDWR) };
    my @src = (
        $p->{stdin}  // $devnull->(),
        $p->{stdout} ? fileno $p->{stdout} : $devnull->(),
        $p->{stderr} ? fileno $p->{stderr} : $devnull->(),
        map { $_->[1] } @{ $p->{sockets} },
    );
    my $nplaced = @src;
    push @src, fileno $p->{ready};   # copied high too, and closed last
    if (grep { !defined } @src) {
        print STDERR "$PROG: $name: cannot open /dev/null: $!\n";
        POSIX::_exit(EXIT_SETUP_FAILED);
    }
    for my $t (3 .. $nplaced - 1) {
        push @late, "fd $t, opened by the preload, is replaced by socket '$p->{sockets}[$t - 3][0]'"
            if $preload_fd{$t};
    }
    # Copies first, above every open fd, so that no target overwrites a
    # source still to be placed (socket a at fd 4 may go to 3 while socket
    # b at fd 3 goes to 4).
    my $high = 1 + max(@{ open_fds() || [ 255 ] }, $nplaced - 1);
    my @copy;
    for my $i (0 .. $#src) {
        defined POSIX::dup2($src[$i], $high + $i) or setup_failed("dup2 $src[$i]: $!");
        push @copy, $high + $i;
    }
    # The proxy's own handles go through Perl's close, so that no Perl
    # handle is left pointing at an fd number a later open reuses.
    close $_ for grep { defined && defined fileno $_ }
        $cmd_fh, $wake_r, $wake_w, $p->{stdout}, $p->{stderr}, $p->{ready}, @{ $p->{close} },
        (map { $_->{fh} } values %reader), (map { $_->{fh} } values %out);
    # dup2 onto another fd leaves close-on-exec clear on the new fd: the
    # sockets stay open across an exec the service may do.
    for my $i (0 .. $nplaced - 1) {
        defined POSIX::dup2($copy[$i], $i) or setup_failed("dup2 to $i: $!");
    }
    my $ready = $copy[-1];
    my %keep = map { $_ => 1 } 0 .. $nplaced - 1, $ready;
    # What remains open is closed, but for the preload's own files.
    for my $fd (@{ open_fds() || [ @copy, values %socket_fd, defined $null ? $null : () ] }) {
        POSIX::close($fd) unless $keep{$fd} || $preload_fd{$fd};
    }
    print STDERR "$PROG: $name: $_\n" for @late;
    if (@{ $p->{problems} }) {
        print STDERR "$PROG: $name cannot run: $_\n" for @{ $p->{problems} };
        POSIX::_exit(EXIT_SETUP_FAILED);
    }

    # The environment: the proxy's, the service's add_env, then ours.
    delete @ENV{ grep { /^_CFK_/ } keys %ENV };
    delete @ENV{qw(LISTEN_FDS LISTEN_FDNAMES LISTEN_PID)};
    my $env = $p->{env} || {};
    for my $k (sort keys %$env) {
        next if ref $env->{$k} && ref $env->{$k} ne 'JSON::PP::Boolean';
        $ENV{$k} = defined $env->{$k} ? "$env->{$k}" : '';
    }
    $ENV{CONTROL_FREAK_ENABLED} = 1;
    $ENV{CONTROL_FREAK_SERVICE} = $name;
    if (my @s = @{ $p->{sockets} }) {
        $ENV{LISTEN_FDS} = scalar @s;
        $ENV{LISTEN_FDNAMES} = join ':', map { $_->[0] } @s;
        $ENV{LISTEN_PID} = $$;
    }

    $0 = "[cfk $name] $p->{shown}";
    $0 =~ s/\s+\z//;
    POSIX::close($ready);

    if ($svc_code) {
        @ARGV = ();
        eval { $svc_code->(); 1 } and exit 0;
        print STDERR $@;
        exit EXIT_DIED;
    }
    my $file = $p->{file};
    unless (-f $file && -r _) {
        print STDERR "$PROG: cannot run $file: " . (-e _ ? 'not a readable file' : $!) . "\n";
        exit EXIT_NO_SCRIPT;
    }
    @ARGV = @{ $p->{args} };
    my $path = $file =~ m{^\.{0,2}/} ? $file : "./$file";
    { package main; do $path; }
    if ($@) {
        print STDERR $@;
        exit EXIT_DIED;
    }
    exit 0;
}

sub setup_failed {
    print STDERR "$PROG: cannot set up the service's fds: $_[0]\n";
    POSIX::_exit(EXIT_SETUP_FAILED);
}

# --- small things --------------------------------------------------------

# open_fds lists this process's open fds, or returns undef without /proc.
sub open_fds {
    opendir(my $dh, '/proc/self/fd') or return undef;
    my $own = fileno $dh;
    my @fds = grep { /^\d+$/ && (!defined $own || $_ != $own) } readdir $dh;
    closedir $dh;
    return [ sort { $a <=> $b } @fds ];
}

sub nonblocking {
    my ($fh) = @_;
    my $flags = fcntl($fh, F_GETFL, 0) or die "$PROG: fcntl: $!\n";
    fcntl($fh, F_SETFL, $flags | O_NONBLOCK) or die "$PROG: fcntl: $!\n";
}

sub max { my $m = shift; for (@_) { $m = $_ if $_ > $m } $m }

# A die that escapes is a bug: stop the children rather than orphan them.
unless (eval { main(); 1 }) {
    my $err = $@;
    print STDERR "$PROG: internal error: $err";
    for my $svc (values %service_of_pid) {
        kill '-TERM', $svc->{pid} or kill 'TERM', $svc->{pid};
    }
    exit 1;
}
exit 0;

# No __END__: it would keep this file open as DATA, an fd every child
# would inherit.

=head1 NAME

cfk-proxy.pl - a ControlFreak proxy that runs Perl services out of one
preloaded interpreter, sharing its memory

=head1 SYNOPSIS

In cfkd's configuration:

  proxy app cmd=["perl","/srv/cfk/cfk-proxy.pl","--preload","/srv/app/preload.pl"]
  proxy app service web1 cmd=/srv/app/worker.pl
  proxy app service web1 sockets=web
  command start service web1

By hand (it is started by cfkd, which hands it its pipes):

  cfk-proxy.pl --preload FILE
  cfk-proxy.pl --help | --man

Options:

  -p, --preload FILE   a Perl file loaded once, with require (required)
  -h, --help           this help
  -m, --man            the whole manual

=head1 DESCRIPTION

B<cfk-proxy.pl> is a proxy for B<cfkd>, the ControlFreak supervisor, and a
drop-in replacement for ControlFreak 1.0's F<cfk-share-mem-proxy.pl>, in
pure Perl with core modules only (Perl 5.14 or later). cfkd starts it (from C<proxy NAME cmd=...>)
and sends it start and stop commands; it forks each service from its own
interpreter and reports each start and exit back, as described in
F<proxies/PROTOCOL.md>.

The point is memory. The preload (C<--preload FILE>) is loaded once, in the
proxy, before any service runs: the modules, the configuration, the data an
application keeps in memory. Every service is a C<fork> of the proxy that
does B<not> exec: it starts with all of that already in memory, and the
kernel shares the pages among the proxy and all its workers until one of
them writes to a page. Sixteen workers over a 200 MB data set cost much
less than sixteen times 200 MB, and they start in milliseconds, since
nothing is loaded again. See L</KEEPING MEMORY SHARED> for what keeps pages
shared and what does not.

=head1 HOW A SERVICE RUNS

If the preload returns a code reference (its last statement is C<sub { ... }>),
every service runs that code and its C<cmd> is ignored (but for C<$0>).

Otherwise the service's C<cmd> names a Perl file, run in the child with
C<do FILE> inside the preloaded interpreter: the file sees everything the
preload defined (its packages, its globals). When C<cmd> is a JSON array,
its first element is the file and the rest is C<@ARGV>; a string that is
not the name of a file is split on spaces the same way. A relative path is
taken relative to the proxy's current directory (not searched in C<@INC>).
Only what the preload loaded is shared: code the file itself loads is
loaded again by each worker, so put the heavy C<use> lines in the preload.

The child exits 0 when the file (or the code) returns; with 255 when it
dies (the message goes to its stderr, hence to cfkd's log); with 2 when the
file cannot be read; with 127 when its environment could not be set up
(an unknown socket, for instance). C<exit> and C<END> blocks work as in any
Perl program.

In the child:

=over

=item * C<$0> is C<[cfk NAME] CMD> (C<ps> shows it).

=item * The signal handlers the proxy set (TERM, INT, HUP, CHLD, PIPE) are back to the defaults, and the proxy's signal
mask is back to what it was when it started.

=item * The child leads its own session and process group (C<setsid>),
unless the service has C<no_new_session>; cfkd and the proxy signal the
whole group.

=item * fd 0 is the service's C<tie_stdin_to> socket, or F</dev/null>. fds 1
and 2 are pipes the proxy reads: each line becomes a C<out:NAME:line> or
C<err:NAME:line> log line for cfkd (a line longer than 16 KiB is cut in
pieces; a last line without newline is sent when the pipe closes), or
F</dev/null> under C<ignore_stdout> / C<ignore_stderr>. STDOUT is
autoflushed, so lines reach the log as they are printed; set C<$| = 0> if a
service prints a lot.

=item * The sockets named in the service's C<sockets> are at fds 3, 4, ...
in that order, without close-on-exec, with C<LISTEN_FDS>, C<LISTEN_FDNAMES>
(names joined with C<:>) and C<LISTEN_PID> (the child's own pid) set, as
systemd does.

=item * No other fd of the proxy is open: not its pipes to cfkd, not other
services' pipes, not the sockets the service did not ask for. The files the
preload itself opened stay open: they are the application's (the proxy
keeps fds 3 to 18 busy while the preload runs, so that they do not land
where sockets go).

=item * The environment is the proxy's, without cfkd's C<_CFK_*> variables,
plus the service's C<add_env>, plus C<CONTROL_FREAK_ENABLED=1> and
C<CONTROL_FREAK_SERVICE=NAME>.

=back

=head1 THE PROXY ITSELF

A service is reported C<started> once its child is set up (in its own
session, its fds and environment in place) and about to run the service's
code: from then on cfkd may signal its process group. The child says so by
closing a pipe the proxy watches; an exit that comes first counts as a
start, and both are reported.

It runs a single C<select> loop. Writes to cfkd's status and log pipes are
non-blocking and buffered: a cfkd that does not read never blocks the loop
or the services. Statuses are never dropped; log lines beyond 1 MiB of
backlog are dropped oldest first, and counted in a log line once cfkd reads
again.

Exits are reaped in the loop with C<waitpid(-1, WNOHANG)> (the SIGCHLD
handler only wakes it) and each exit of a started service is reported once,
with the raw wait status, after what is left in its pipes. A start is
recorded before the loop can reap again, so an exit cannot overtake its
start (the original reaped in its signal handler, and could); exits of
other children (ones the preloaded code forked) are reaped, remembered for
a minute in case a start claims them, and not reported.

C<stop> sends TERM to the service's process group (to the service alone
under C<no_new_session>); a stop of an unknown service is logged as an
error. On TERM, INT or HUP, and when the command pipe reaches end of file
(cfkd is gone), the proxy sends TERM to every service's group, reaps and
reports them for up to 2 seconds, KILLs what is left, and exits 0.

Malformed commands and unknown verbs are logged as C<err:-:> lines and
skipped. A start of a service that is already running does not fork a
second one: it is logged, and the running one's C<started> is sent again. The proxy's own messages are C<out:-:> / C<err:-:> log lines; its
stderr (cfkd logs it as C<proxy.NAME.err>) gets only what cannot go there.

=head1 UNDER cfkd

The preload runs before the proxy reads any command, and cfkd counts a
service's C<startwait_secs> from the moment it asks for the start: a
preload that takes longer than that makes the first start of an auto
proxy fail ("did not report the start within startwait_secs"). Give such
services a C<startwait_secs> longer than the preload, or declare the proxy
C<noauto=1> and start it ahead with C<command proxyup>. The proxy's first
log line, C<cfk-proxy started>, is written when the preload is done.

The proxy's own log lines are logged by cfkd as C<proxy.NAME.out> and
C<.err>, its services' lines as theirs (C<service.NAME.out>, C<.err>).

=head1 KEEPING MEMORY SHARED

After a fork, a page stays shared until some process writes to it. Perl
writes to memory where one may not expect it, and that decides how much a
pool of workers really shares.

=over

=item * B<Perl has no garbage collector> to run or to avoid: memory is
freed by reference counting as values go. Nothing walks the heap behind
the application's back (nothing like Python's or Ruby's GC marking every
object), so an idle worker stays shared: only what its code touches is
copied.

=item * B<Reading is writing, for small values.> Every Perl value (SV) has
a header with a reference count and flags, and Perl updates them as it
reads. Iterating a hash (C<keys>, C<each>) makes a value for each key that
shares the key's string and counts it in the shared key table. Copying a
string (C<my $v = $h{$k}>) sets up Perl's own copy-on-write, which writes
a share count into the string's buffer and a flag into its header. A
regular expression match does the same to the string it matches (to keep
C<$&> and the captures valid). C<foreach> over C<values> counts a
reference to each value. A string used as a number caches the number in
its header. Each of these writes to a page full of other values, and the
kernel copies the whole page into the worker. A worker that walks a hash
of a million small strings this way ends up with its own copy of nearly
all of it, though it changed nothing.

=item * B<Reading in place writes nothing.> Looking a key up and using the
value where it is (C<length $h{$k}>, C<print $h{$k}>, C<substr> or
C<unpack> of it) leaves every page shared. So does a lookup-style
application (a request handler that looks up the few keys it needs), for
any number of requests.

=item * B<Bulk data in few, big values.> Data packed into one large scalar
(fixed-size records read with C<substr> or C<unpack>, an index of offsets
in another packed string) is one SV: reading it never writes to its
buffer, and its pages stay shared however often every worker reads all of
it. The same goes for a file mapped into memory before the fork (the
mapping is inherited) and for data kept outside Perl values (an XS
structure, a CDB or an LMDB file).

=item * Build the data and load the modules in the preload, not in the
services; code a service file loads itself is compiled again in each
worker.

=back

F<proxies/perl/BENCH.md> has the figures: 16 workers over about 200 MB of
data held as a hash of a million small strings and as one packed string,
idle and after each worker has read all of it, and what each way of
reading a hash costs.

=head1 DIFFERENCES FROM cfk-share-mem-proxy.pl

Core modules only (no AnyEvent, JSON::XS, Try::Tiny). Exits are reaped in
the loop, not in the signal handler, and each is reported once. Writes to
cfkd never block and are bounded. Children get only the fds they should,
and C<CONTROL_FREAK_*> even without C<add_env>. The C<sockets> field
(LISTEN_FDS) is supported. A start of a service already running reports its
pid again instead of starting a second copy. A socket the proxy was not
given makes the service fail at once instead of running with F</dev/null>
as stdin. At shutdown, services get a grace period and are KILLed after it.

=head1 SEE ALSO

F<proxies/PROTOCOL.md>, L<cfkd>, ControlFreak 1.0's
F<cfk-share-mem-proxy.pl>.

=cut
