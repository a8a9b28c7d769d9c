
# Copyright (c) meisa maintainers

# The delivery worker stopped by SIGTERM: it exits cleanly, the postmaster
# starts it again (bgw_restart_time) and mail goes on, each message once;
# stopped in the middle of a slow batch, it leaves nothing 'sending' and
# the rest of the batch is delivered after the restart, each once.

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
my $node = MeisaTest::delivery_node('restart', $sink);

ok(wait_for(sub { defined worker_pid($node) }, 10),
	'the worker starts with the server');

# SIGTERM of an idle worker
$sink->clear;
my $pid = worker_pid($node);
ok(defined $pid, "sigterm: the worker runs (backend_type 'meisa delivery')");
kill 'TERM', $pid;
ok(wait_for(sub { (worker_pid($node) // 0) != $pid }, 5),
	'sigterm: the worker exits');
my $c = add_contact($node, 'sigterm@example.com');
my @ids = map { queue($node, $c, 'sigterm@example.com', "after sigterm $_") }
  0 .. 2;
ok( wait_for(
		sub {
			my $p = worker_pid($node);
			defined $p && $p != $pid;
		},
		15),
	'sigterm: the postmaster restarts the worker');
ok(all_status($node, \@ids, 'sent', 15),
	'sigterm: messages queued meanwhile are sent')
  or diag explain status($node, \@ids);
sleep 0.3;
is(scalar($sink->files), 3, 'sigterm: each once');

# SIGTERM in the middle of a slow batch: unsent rows go back to the queue
$sink->clear;
$sink->set_control('{"delay": 0.3}');
@ids = map { queue($node, $c, 'sigterm@example.com', "slow $_") } 0 .. 7;
wait_for(sub { $sink->files >= 2 }, 10, 0.02);
$pid = worker_pid($node);
kill 'TERM', $pid;
wait_for(sub { (worker_pid($node) // 0) != $pid }, 5);
my $st = status($node, \@ids);
ok( !grep({ $_->[0] ne 'sent' && $_->[0] ne 'queued' } values %$st),
	"sigterm mid-batch: nothing left 'sending' after a clean exit")
  or diag explain $st;
$sink->set_control('{}');
my $sent = all_status($node, \@ids, 'sent', 20);
sleep 0.3;
my @rec  = sort $sink->received_ids;
my @want = sort values %{ msgids($node, \@ids) };
ok($sent && "@rec" eq "@want",
	'sigterm mid-batch: all delivered after the restart, each once')
  or diag explain [ status($node, \@ids), scalar(@rec) ];

ok(no_crash_in_log($node), 'no server crash in the log');

$node->stop;
$sink->stop;
done_testing();
