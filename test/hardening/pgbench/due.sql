-- the scheduler's SQL entry point, concurrently with the worker
SELECT stress.run_due();
