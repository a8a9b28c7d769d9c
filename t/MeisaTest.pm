
# Copyright (c) meisa maintainers

=pod

=head1 NAME

MeisaTest - shared helpers of meisa's TAP tests (t/*.pl)

=head1 SYNOPSIS

  use FindBin;
  use lib $FindBin::RealBin;
  use MeisaTest;

  my $sink = MeisaTest::Sink->start;        # test/delivery/smtp_sink.py
  my $node = MeisaTest::delivery_node('main', $sink);
  my $c    = add_contact($node, 'ada@example.com');
  my $id   = queue($node, $c, 'ada@example.com', 'Hello');
  ok(all_status($node, [$id], 'sent', 15), 'delivered');

=head1 DESCRIPTION

A node made with PostgreSQL::Test::Cluster, meisa preloaded and its
delivery worker pointed at a real SMTP server: test/delivery/smtp_sink.py
(aiosmtpd, run with /usr/bin/python3) on a free port, started as a child
process and stopped when the test ends.  The sink stores each message it
accepts as DIR/NNNNNN-PID.eml and answers late or with chosen codes when
told so by its JSON control file (see smtp_sink.py).

=cut

package MeisaTest;

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

our @EXPORT = qw(wait_for worker_pid postmaster_pid child_pids pids_gone
  add_contact queue status all_status msgids no_crash_in_log);

# the database the delivery worker serves
our $dbname = 'meisa_test';

=pod

=item delivery_node(name, sink, extra_conf)

Creates and starts a node with meisa preloaded, the worker's settings of
the live delivery tests (short naptime, backoff and lease) and the SMTP
server at sink; creates database meisa_test and the extension in it, and
returns the node once the delivery worker runs.

=cut

sub delivery_node
{
	my ($name, $sink, $extra_conf) = @_;
	my $port = $sink->port;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init(extra => [ '--locale=C', '--encoding=UTF8' ]);
	# the token key, from a file only the server's user can read
	my $keyfile = $node->data_dir . '/meisa_secret';
	open(my $fh, '>', $keyfile) or die "could not write $keyfile: $!";
	print $fh "live-test-secret-5f1c0e2b9a\n";
	close($fh);
	chmod(0600, $keyfile) or die "could not chmod $keyfile: $!";
	$node->append_conf('postgresql.conf', <<"EOC" . ($extra_conf // ''));
shared_preload_libraries = 'meisa'
meisa.database = '$dbname'
meisa.smtp_url = 'smtp://127.0.0.1:$port'
meisa.from_address = 'Meisa Test <noreply\@meisa.test>'
meisa.secret_file = 'meisa_secret'
meisa.unsubscribe_base_url = 'https://app.test/unsubscribe/'
meisa.worker_naptime = '1s'
meisa.retry_backoff_base = '1s'
meisa.retry_backoff_max = '2s'
meisa.lease_time = '6s'
meisa.smtp_timeout = '5s'
meisa.smtp_connect_timeout = '2s'
EOC
	$node->start;
	$node->safe_psql('postgres', "CREATE DATABASE $dbname");
	$node->safe_psql($dbname, 'CREATE EXTENSION meisa');
	return $node;
}

=pod

=item wait_for(code, timeout, step)

Calls code until it returns true or timeout seconds pass (every step
seconds, default 0.1); returns its last value.

=cut

sub wait_for
{
	my ($cond, $timeout, $step) = @_;
	my $end = time + $timeout;
	$step //= 0.1;
	while (1)
	{
		my $v = $cond->();
		return $v if $v || time > $end;
		usleep($step * 1e6);
	}
}

=pod

=item worker_pid(node)

The pid of the delivery worker (backend_type 'meisa delivery'), or undef.

=cut

sub worker_pid
{
	my ($node) = @_;
	my $pid = $node->safe_psql($dbname,
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'meisa delivery'"
	);
	return $pid eq '' ? undef : $pid + 0;
}

=pod

=item postmaster_pid(node)

The postmaster's pid, from its postmaster.pid.

=cut

sub postmaster_pid
{
	my ($node) = @_;
	my $pidfile = slurp_file($node->data_dir . '/postmaster.pid');
	my ($pid) = split /\n/, $pidfile;
	return $pid + 0;
}

=pod

=item child_pids(pid)

The pids of pid's child processes (ps --ppid).

=cut

sub child_pids
{
	my ($ppid) = @_;
	my ($out, $err) = run_command([ 'ps', '-o', 'pid=', '--ppid', $ppid ]);
	return map { $_ + 0 } split ' ', $out;
}

=pod

=item pids_gone(pid, ...)

True when none of the processes exists any more.

=cut

sub pids_gone
{
	foreach my $pid (@_)
	{
		return 0 if kill(0, $pid) || !$!{ESRCH};
	}
	return 1;
}

# a SQL string literal
sub _lit
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	return "'$s'";
}

=pod

=item add_contact(node, email)

Inserts a subscribed contact; returns its id.

=cut

sub add_contact
{
	my ($node, $email) = @_;
	return $node->safe_psql($dbname,
		    'INSERT INTO meisa.contacts (email, subscribed) VALUES ('
		  . _lit($email)
		  . ', true) RETURNING id') + 0;
}

=pod

=item queue(node, contact_id, to, subject)

Queues one transactional message (text and html body, a unique
Message-ID); returns its id.

=cut

sub queue
{
	my ($node, $contact, $to, $subject) = @_;
	return $node->safe_psql($dbname,
		    'INSERT INTO meisa.messages (contact_id, to_email, kind, subject, text, html, message_id) '
		  . "VALUES ($contact, "
		  . _lit($to)
		  . ", 'transactional', "
		  . _lit($subject)
		  . ", 'text body', '<p>html body</p>', "
		  . "'live-' || gen_random_uuid() || '\@meisa.test') RETURNING id") + 0;
}

=pod

=item status(node, ids)

Hash of id => [status, attempts, last_error] of the messages ids.

=cut

sub status
{
	my ($node, $ids) = @_;
	my $out = $node->safe_psql(
		$dbname,
		"SELECT id, status, attempts, coalesce(last_error, '') FROM meisa.messages "
		  . 'WHERE id IN ('
		  . join(',', @$ids)
		  . ') ORDER BY id',
		extra_params => [ '-F', "\t" ]);
	my %st;
	foreach my $line (split /\n/, $out)
	{
		my ($id, @rest) = split /\t/, $line, 4;
		$st{$id} = \@rest;
	}
	return \%st;
}

=pod

=item all_status(node, ids, status, timeout)

Waits up to timeout seconds (default 20) until every message of ids has
the status; true if they do.

=cut

sub all_status
{
	my ($node, $ids, $want, $timeout) = @_;
	return wait_for(
		sub {
			my $st = status($node, $ids);
			return scalar(keys %$st) == scalar(@$ids)
			  && !grep { $_->[0] ne $want } values %$st;
		},
		$timeout // 20);
}

=pod

=item msgids(node, ids)

Hash of id => the Message-ID header its message carries (<...>).

=cut

sub msgids
{
	my ($node, $ids) = @_;
	my $out = $node->safe_psql($dbname,
		    'SELECT id, message_id FROM meisa.messages WHERE id IN ('
		  . join(',', @$ids) . ')',
		extra_params => [ '-F', "\t" ]);
	my %m;
	foreach my $line (split /\n/, $out)
	{
		my ($id, $mid) = split /\t/, $line, 2;
		$mid =~ s/^<+|>+$//g;
		$m{$id} = "<$mid>";
	}
	return \%m;
}

=pod

=item no_crash_in_log(node)

True when the server log shows no segfault and no failed assertion.

=cut

sub no_crash_in_log
{
	my ($node) = @_;
	my $log = slurp_file($node->logfile);
	return $log !~ /terminated by signal 11/ && $log !~ /TRAP/;
}

package MeisaTest::Sink;

use strict;
use warnings;

use File::Basename qw(dirname);
use IPC::Run;
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

my @running;

=pod

=item MeisaTest::Sink->start

Starts test/delivery/smtp_sink.py on 127.0.0.1 and a free port (one of
PostgreSQL::Test::Cluster::get_free_port), mail in a fresh temporary
directory; returns once it listens.

=cut

sub start
{
	my ($class) = @_;
	my $script = File::Spec->rel2abs(
		dirname(__FILE__) . '/../test/delivery/smtp_sink.py');
	my $base = PostgreSQL::Test::Utils::tempdir('smtp');
	my $self = bless {
		port    => PostgreSQL::Test::Cluster::get_free_port(),
		dir     => "$base/mail",
		control => "$base/control.json",
		out     => '',
	}, $class;
	mkdir $self->{dir} or die "mkdir $self->{dir}: $!";
	$self->{proc} = IPC::Run::start(
		[
			'/usr/bin/python3', $script, $self->{port}, $self->{dir},
			$self->{control}
		],
		'<', '/dev/null', '>&', \$self->{out});
	push @running, $self;
	pump_until(
		$self->{proc},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default),
		\$self->{out}, qr/listening/)
	  or die "smtp_sink.py did not start: $self->{out}";
	return $self;
}

# the SMTP port
sub port { return $_[0]->{port}; }

=pod

=item $sink->stop

SIGTERM, then SIGKILL after a grace period; also run at the end of the test.

=cut

sub stop
{
	my ($self) = @_;
	return unless $self->{proc};
	$self->{proc}->kill_kill(grace => 5);
	$self->{proc} = undef;
	@running = grep { $_ != $self } @running;
	return;
}

END
{
	my $rc = $?;
	$_->stop foreach @running;
	$? = $rc;
}

=pod

=item $sink->set_control(json)

Replaces the control file (atomically) with the JSON text, e.g.
'{"delay": 0.3}'; '{}' for plain 250 answers.

=cut

sub set_control
{
	my ($self, $json) = @_;
	my $tmp = "$self->{control}.tmp";
	open my $fh, '>', $tmp or die "open $tmp: $!";
	print $fh $json;
	close $fh;
	rename $tmp, $self->{control} or die "rename $tmp: $!";
	usleep(20_000);
	return;
}

=pod

=item $sink->clear

Plain answers again, and forgets every message received so far.

=cut

sub clear
{
	my ($self) = @_;
	$self->set_control('{}');
	unlink $self->files;
	# the sink keeps its logs open: truncate them, do not recreate
	foreach my $log (qw(received.log connections.log inflight.log))
	{
		truncate("$self->{dir}/$log", 0) if -e "$self->{dir}/$log";
	}
	return;
}

=pod

=item $sink->files

The stored messages' files, in the order received (in scalar context:
how many).

=cut

sub files
{
	my ($self) = @_;
	my @files = sort glob("$self->{dir}/*.eml");
	return wantarray ? @files : scalar @files;
}

=pod

=item $sink->messages

List of [raw bytes, Message-ID header] of each stored message.

=cut

sub messages
{
	my ($self) = @_;
	my @out;
	foreach my $path ($self->files)
	{
		open my $fh, '<:raw', $path or die "open $path: $!";
		my $raw = do { local $/; <$fh> };
		close $fh;
		my ($head) = split /\r?\n\r?\n/, $raw, 2;
		$head =~ s/\r?\n[ \t]+/ /g;    # unfold
		my ($mid) = $head =~ /^Message-ID:[ \t]*(.*?)[ \t]*\r?$/mi;
		push @out, [ $raw, $mid ];
	}
	return @out;
}

=pod

=item $sink->received_ids

The Message-ID of each stored message.

=cut

sub received_ids
{
	my ($self) = @_;
	return map { $_->[1] } $self->messages;
}

=pod

=item $sink->inflight

The Message-IDs the sink stored and had not answered yet when told to
answer late (inflight.log), in order (in scalar context: how many).

=cut

sub inflight
{
	my ($self) = @_;
	my $path = "$self->{dir}/inflight.log";
	my @ids =
	  -e $path
	  ? map { (split ' ')[1] } grep { /\S/ } split /\n/, slurp_file($path)
	  : ();
	return wantarray ? @ids : scalar @ids;
}

1;
