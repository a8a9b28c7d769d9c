
# Copyright (c) meisa maintainers

# kill -9 while the delivery worker sends a batch to a slow SMTP server:
# first of the postmaster alone, then of the postmaster and every server
# process at once (as in a machine crash), with a message handed over and
# not answered yet.  After a restart: no message lost, duplicates only
# from the batch in flight (each resent once, with the same Message-ID and
# identical bytes), and amcheck finds meisa.messages and its indexes sound.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use MeisaTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);

my $sink = MeisaTest::Sink->start;
# commits as durable as in production (PostgreSQL::Test::Cluster turns
# fsync off)
my $node = MeisaTest::delivery_node('crash', $sink, "fsync = on\n");
my $db   = $MeisaTest::dbname;

ok(wait_for(sub { defined worker_pid($node) }, 10),
	'the worker starts with the server');

# kill -9 of the postmaster ($whole: and of all its children) during a
# batch of 40 marketing messages the sink answers 0.15 s late
sub crash_during_batch
{
	my ($whole) = @_;
	my $what = $whole ? 'postmaster and all its children' : 'postmaster';
	my $tag  = $whole ? 'crash-all' : 'crash';

	$sink->clear;
	$sink->set_control('{"delay": 0.15}');
	my $c   = add_contact($node, "$tag\@example.com");
	my @ids = split /\n/, $node->safe_psql($db,
		    'INSERT INTO meisa.messages (contact_id, to_email, kind, subject, text, html, message_id) '
		  . "SELECT $c, '$tag\@example.com', 'marketing', '$tag ' || i, 'text ' || i, "
		  . "'<p>' || i || '</p>', '$tag-' || i || '-' || gen_random_uuid() "
		  . 'FROM generate_series(1, 40) i RETURNING id');
	my $idlist = join ',', @ids;
	wait_for(sub { $sink->files >= 5 }, 15, 0.02);
	my $sending = $node->safe_psql($db,
		"SELECT count(*) FROM meisa.messages WHERE status = 'sending'");
	my $ppid     = postmaster_pid($node);
	my @children = child_pids($ppid);
	my $inflight;
	if ($whole)
	{
		# strike while a message is handed over and the server has not
		# answered yet (nothing slow between seeing it and the kill)
		my $n = $sink->inflight;
		wait_for(sub { $sink->inflight > $n }, 5, 0.005);
		$inflight = ($sink->inflight)[-1];
		kill 'KILL', $ppid, @children;
	}
	$node->kill9;
	kill 'KILL', @children if $whole;
	ok($sending > 0,
		"kill -9 ($what): killed while $sending messages were 'sending'");
	ok(wait_for(sub { pids_gone($ppid, @children) }, 20),
		"kill -9 ($what): every server process is gone");

	my $before = $sink->files;
	$sink->set_control('{}');
	$node->start;
	ok(all_status($node, \@ids, 'sent', 40),
		"kill -9 ($what): after restart every message is sent")
	  or diag $node->safe_psql($db,
		"SELECT status, count(*) FROM meisa.messages WHERE id IN ($idlist) GROUP BY 1"
	  );
	sleep 0.5;

	my %want = %{ msgids($node, \@ids) };
	my @got  = $sink->messages;
	my (%counts, %raws);
	foreach my $m (@got)
	{
		my ($raw, $mid) = @$m;
		$counts{$mid}++;
		$raws{$mid}{$raw} = 1;
	}
	my @lost = grep { !$counts{$_} } values %want;
	my %dups = map { $_ => $counts{$_} } grep { $counts{$_} > 1 } keys %counts;
	my $extra = 0;
	$extra += $_ - 1 foreach values %dups;
	ok(!@lost, "kill -9 ($what): none lost") or diag explain \@lost;
	ok( keys(%dups) <= $sending && !grep({ $_ != 2 } values %dups),
		"kill -9 ($what): "
		  . keys(%dups)
		  . " duplicate(s), at most the in-flight batch ($sending)")
	  or diag explain \%dups;
	ok(!grep({ keys(%{ $raws{$_} }) != 1 } keys %dups),
		"kill -9 ($what): a resent message has the same Message-ID and identical bytes"
	);
	is(scalar(@got), 40 + $extra,
		"kill -9 ($what): received 40 + duplicates (before the crash: $before)"
	);
	if ($whole)
	{
		ok( defined $inflight
			  && ($dups{$inflight} // 0) == 2
			  && keys(%{ $raws{$inflight} }) == 1,
			"kill -9 ($what): the message in flight ("
			  . ($inflight // 'none')
			  . ') arrived twice, with identical bytes')
		  or diag explain \%dups;
		my $again = $node->safe_psql($db,
			"SELECT count(*) FROM meisa.messages WHERE id IN ($idlist) AND attempts >= 2"
		);
		ok($again > 0,
			"kill -9 ($what): the batch left 'sending' was claimed again after its lease ($again messages)"
		);
	}

	$node->safe_psql($db, 'CREATE EXTENSION IF NOT EXISTS amcheck');
	my $bad = $node->safe_psql($db,
		"SELECT count(*) FROM verify_heapam('meisa.messages')");
	$node->safe_psql($db,
		    'SELECT bt_index_check(i.indexrelid) FROM pg_index i '
		  . 'JOIN pg_class c ON c.oid = i.indrelid '
		  . "WHERE c.relname = 'messages' AND c.relnamespace = 'meisa'::regnamespace"
	);
	is($bad, '0',
		"kill -9 ($what): amcheck finds meisa.messages and its indexes sound");
	return;
}

crash_during_batch(0);
crash_during_batch(1);

ok(no_crash_in_log($node), 'no server crash in the log (besides the kill -9)');

$node->stop;
$sink->stop;
done_testing();
