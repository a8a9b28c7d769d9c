-- meisa_trigger_email with repeating idempotency keys
\set n random(1, :users)
\set k random(1, 5)
SELECT stress.mail(:n, :k);
