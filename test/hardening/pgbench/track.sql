-- meisa_track: purchases and logins, repeating event ids
\set n random(1, :users)
\set amount random(1, 200)
\set ev random(1, 20)
SELECT stress.track(:n, :amount, :ev);
