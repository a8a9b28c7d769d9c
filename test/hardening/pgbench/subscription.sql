-- unsubscribe / resubscribe
\set n random(1, :users)
\set u random(0, 1)
SELECT stress.subscription(:n, :u = 1);
