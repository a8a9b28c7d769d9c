-- the sender's SQL entry point, concurrently with the worker
SELECT stress.deliver();
